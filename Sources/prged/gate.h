/* Inference before training. The library lets classify/generate run while a trainer trains
 * (the trainer has its own threads), but on a small device both would share the same few
 * cores. So inference never waits for training; instead training, between two steps (in its
 * progress callback), pauses while any inference request is running. */
#ifndef PRGED_GATE_H
#define PRGED_GATE_H

#include <pthread.h>
#include <stdatomic.h>

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int inference; /* requests computing right now */
};

void gate_init(struct gate *g);
void gate_destroy(struct gate *g);
void gate_enter_inference(struct gate *g);
void gate_leave_inference(struct gate *g);

/* Training side: returns once no inference runs, or once *cancel is set. */
void gate_wait_for_inference(struct gate *g, atomic_int *cancel);

#endif
