/* Who may compute on the model. The library serializes forward passes, but a training slice
 * is many of them; the gate makes a slice one unit and lets waiting inference requests go
 * first, so a classify or generate waits for at most the slice that is running. */
#ifndef PRGED_GATE_H
#define PRGED_GATE_H

#include <pthread.h>

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int busy;
    int inference_waiting;
};

void gate_init(struct gate *g);
void gate_destroy(struct gate *g);
void gate_enter_inference(struct gate *g);
/* Waits while the model is busy or any inference request is waiting. */
void gate_enter_training(struct gate *g);
void gate_leave(struct gate *g);

#endif
