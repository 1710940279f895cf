/* The state every part of the daemon shares. */
#ifndef PRGED_DAEMON_H
#define PRGED_DAEMON_H

#include "config.h"
#include "gate.h"
#include "prge.h"
#include "profile.h"
#include "worker.h"

#include <pthread.h>
#include <time.h>

struct daemon {
    const char *config_path;
    /* Fields that SIGHUP cannot change are read freely. The reloadable ones (training,
     * limits) are written by the main thread under settings_mu and read by other threads
     * through daemon_budget/daemon_limits; allowed_uids and log_level belong to the main
     * thread (log_level is applied through log_set_level). */
    struct config cfg;
    pthread_mutex_t settings_mu;
    prge_model *model;
    struct gate gate;
    struct profiles profiles;
    struct worker worker;
    int wake_fd;   /* eventfd: wakes the poll loop (a job finished, training stopped) */
    /* Main thread only (inline methods run there). */
    size_t n_clients;
    int shutdown_requested;
    double started; /* monotonic seconds */
};

struct training_budget daemon_budget(struct daemon *d);
struct limits daemon_limits(struct daemon *d);

/* SIGHUP: re-reads the config file and applies what can change while running (log_level,
 * training, limits, allowed_uids); logs changes that need a restart. Main thread only. */
void daemon_reload(struct daemon *d);

/* Wakes the poll loop. Safe from any thread. */
void daemon_wake(struct daemon *d);

static inline double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
