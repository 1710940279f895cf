#include "gate.h"

void gate_init(struct gate *g) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->busy = 0;
    g->inference_waiting = 0;
}

void gate_destroy(struct gate *g) {
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mu);
}

void gate_enter_inference(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    g->inference_waiting++;
    while (g->busy) pthread_cond_wait(&g->cond, &g->mu);
    g->inference_waiting--;
    g->busy = 1;
    pthread_mutex_unlock(&g->mu);
}

void gate_enter_training(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    while (g->busy || g->inference_waiting > 0) pthread_cond_wait(&g->cond, &g->mu);
    g->busy = 1;
    pthread_mutex_unlock(&g->mu);
}

void gate_leave(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    g->busy = 0;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}
