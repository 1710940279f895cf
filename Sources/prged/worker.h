/* The background training thread. It trains one profile at a time, in slices of
 * training.refresh_every_s (one prge_trainer_train call each). Between two slices it copies the
 * adapter for inference and, every training.checkpoint_every_s, checkpoints; examples added
 * meanwhile join the trainer then (profile.h). Slices are long because every library run ends
 * with a dev evaluation (when the profile has dev examples). Between two steps, in the progress
 * callback, it paces steps to training.steps_per_minute, pauses while inference runs
 * (gate.h), and stops if asked: a stop lets the step in progress finish, then checkpoints. */
#ifndef PRGED_WORKER_H
#define PRGED_WORKER_H

#include "profile.h"
#include "protocol.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct daemon;

enum train_state { TRAIN_IDLE, TRAIN_RUNNING, TRAIN_STOPPING };

struct train_status {
    enum train_state state;
    char profile[PROFILE_NAME_MAX + 1]; /* the running or last run's profile ("" if none) */
    uint64_t run_steps;                 /* steps done by the running or last run */
    double run_seconds;
    uint64_t max_steps;                 /* this run's budget, 0 = none */
    double max_seconds;
    char end_reason[32];                /* why the last run ended ("" while running)  */
    char last_error[512];               /* the last run's error, "" if none          */
};

struct worker {
    struct daemon *d;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* state changes, new runs, stop requests (CLOCK_MONOTONIC) */
    struct profile *profile; /* the run asked for or running; NULL when idle */
    int stop, quit, exited;
    atomic_int cancel;       /* read by the library's progress callback after every step */
    double run_started;
    struct train_status status;
};

int worker_start(struct worker *w, struct daemon *d);

/* Starts training `p` in the background with a budget of `steps`/`seconds` (0 = none, each
 * capped by the config). Fails with RPC_BUSY while a run is going. */
int worker_train(struct worker *w, struct profile *p, uint64_t steps, double seconds,
                 struct rpc_error *e);

/* Asks the run to stop after the current step; with wait != 0 returns once it has stopped and
 * checkpointed. Returns 0 if a run was going, -1 if training was idle. */
int worker_stop(struct worker *w, int wait);

/* Stops any run (checkpointing it) and ends the thread without waiting: worker_exited tells
 * when it is done (and wakes the poll loop then), worker_join collects it. */
void worker_quit(struct worker *w);
int worker_exited(struct worker *w);
void worker_join(struct worker *w);

/* A reloaded budget may shorten a rate-limit wait. */
void worker_poke(struct worker *w);

void worker_status(struct worker *w, struct train_status *out);

#endif
