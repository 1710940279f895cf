#define _POSIX_C_SOURCE 200809L
#include "gate.h"

#include <time.h>

void gate_init(struct gate *g) {
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->inference = 0;
}

void gate_destroy(struct gate *g) {
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mu);
}

void gate_enter_inference(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    g->inference++;
    pthread_mutex_unlock(&g->mu);
}

void gate_leave_inference(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    if (--g->inference == 0) pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

void gate_wait_for_inference(struct gate *g, atomic_int *cancel) {
    pthread_mutex_lock(&g->mu);
    while (g->inference > 0 && !atomic_load(cancel)) {
        /* A stop request does not signal this condition: look at it every 50 ms. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cond, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
}
