#define _POSIX_C_SOURCE 200809L
#include "worker.h"

#include "daemon.h"
#include "log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A library run needs a positive time limit; any positive one gives at least one step. */
#define MIN_SLICE_SECONDS 0.01

static void set_end(struct worker *w, const char *reason, const char *error) {
    pthread_mutex_lock(&w->mu);
    snprintf(w->status.end_reason, sizeof w->status.end_reason, "%s", reason);
    snprintf(w->status.last_error, sizeof w->status.last_error, "%s", error);
    pthread_mutex_unlock(&w->mu);
}

/* Waits on the worker's condition until `deadline` (monotonic seconds) or a stop request.
 * Caller holds w->mu. */
static void wait_until(struct worker *w, double deadline) {
    while (!w->stop && !w->quit) {
        double left = deadline - mono_now();
        if (left <= 0) return;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)left;
        ts.tv_nsec += (long)((left - floor(left)) * 1e9);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cond, &w->mu, &ts);
    }
}

struct step_ctx {
    struct worker *w;
    struct profile *p;
    double last_step; /* monotonic time the previous step ended (rate cap) */
};

/* Called by the library after every step, on this thread, inside prge_trainer_train; the
 * trainer waits for it, so this is where training yields. */
static int on_progress(const prge_progress *pr, void *user) {
    struct step_ctx *c = user;
    struct worker *w = c->w;
    pthread_mutex_lock(&c->p->stats_mu);
    c->p->stats.step = pr->step;
    c->p->stats.last_loss = pr->train_loss;
    pthread_mutex_unlock(&c->p->stats_mu);
    int64_t rate = daemon_budget(w->d).steps_per_minute;
    pthread_mutex_lock(&w->mu);
    w->status.run_steps++;
    if (rate > 0) wait_until(w, c->last_step + 60.0 / (double)rate);
    pthread_mutex_unlock(&w->mu);
    gate_wait_for_inference(&w->d->gate, &w->cancel);
    c->last_step = mono_now();
    return atomic_load(&w->cancel);
}

/* One library run of at most `steps` steps (0: no limit) and `seconds`; then the adapter copy
 * for inference. Returns 0 or -1 with e set. */
static int train_slice(struct worker *w, struct profile *p, uint64_t steps, double seconds,
                       struct rpc_error *e) {
    struct step_ctx ctx = {w, p, mono_now()};
    profile_lock(p);
    prge_status st = prge_trainer_train(p->trainer, steps, seconds, on_progress, &ctx);
    int rc = 0;
    /* CANCELLED: our callback asked to stop; the step it reported is complete. */
    if (st != PRGE_OK && st != PRGE_ERR_CANCELLED) {
        rpc_error_library(e, st, "training");
        rc = -1;
    } else {
        rc = profile_refresh_adapter_locked(p, e);
    }
    profile_unlock(p);
    return rc;
}

static void checkpoint(struct profile *p, char *error, size_t size) {
    struct rpc_error e;
    profile_lock(p);
    if (profile_checkpoint_locked(p, 0, &e) < 0) {
        log_error("profile %s: %s", p->name, e.message);
        snprintf(error, size, "%s", e.message);
    }
    profile_unlock(p);
}

static void run(struct worker *w, struct profile *p) {
    double last_checkpoint = mono_now();
    const char *reason = "stopped";
    char error[512] = "";
    pthread_mutex_lock(&w->mu);
    uint64_t max_steps = w->status.max_steps;
    double max_seconds = w->status.max_seconds;
    pthread_mutex_unlock(&w->mu);
    log_info("profile %s: training started (max_steps %llu, max_seconds %g)", p->name,
             (unsigned long long)max_steps, max_seconds);
    for (;;) {
        struct training_budget b = daemon_budget(w->d);
        pthread_mutex_lock(&w->mu);
        int stopping = w->stop || w->quit;
        uint64_t done = w->status.run_steps;
        double now = mono_now(), elapsed = now - w->run_started;
        pthread_mutex_unlock(&w->mu);
        if (stopping) break;
        if (max_steps && done >= max_steps) {
            reason = "max_steps";
            break;
        }
        if (max_seconds > 0 && elapsed >= max_seconds) {
            reason = "max_seconds";
            break;
        }
        /* Until the next refresh, the next checkpoint or the end of the time budget. */
        double slice = b.refresh_every_s;
        slice = fmin(slice, last_checkpoint + b.checkpoint_every_s - now);
        if (max_seconds > 0) slice = fmin(slice, max_seconds - elapsed);
        struct rpc_error e;
        if (train_slice(w, p, max_steps ? max_steps - done : 0, fmax(slice, MIN_SLICE_SECONDS), &e) < 0) {
            log_error("profile %s: %s", p->name, e.message);
            snprintf(error, sizeof error, "%s", e.message);
            reason = "error";
            break;
        }
        if (mono_now() - last_checkpoint >= b.checkpoint_every_s) {
            checkpoint(p, error, sizeof error);
            last_checkpoint = mono_now();
        }
    }
    checkpoint(p, error, sizeof error);
    set_end(w, reason, error);
    struct train_status s;
    worker_status(w, &s);
    log_info("profile %s: training ended (%s) after %llu steps in %.1f s", p->name, reason,
             (unsigned long long)s.run_steps, s.run_seconds);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->profile && !w->quit) pthread_cond_wait(&w->cond, &w->mu);
        if (!w->profile) break;
        struct profile *p = w->profile;
        pthread_mutex_unlock(&w->mu);
        run(w, p);
        pthread_mutex_lock(&w->mu);
        w->profile = NULL;
        w->stop = 0;
        atomic_store(&w->cancel, w->quit);
        w->status.state = TRAIN_IDLE;
        w->status.run_seconds = mono_now() - w->run_started;
        pthread_cond_broadcast(&w->cond);
    }
    w->exited = 1;
    pthread_mutex_unlock(&w->mu);
    daemon_wake(w->d);
    return NULL;
}

int worker_start(struct worker *w, struct daemon *d) {
    memset(w, 0, sizeof *w);
    w->d = d;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    atomic_init(&w->cancel, 0);
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

/* min of a request's budget and the config's cap, 0 meaning "none" on both sides. */
static double cap(double asked, double limit) {
    if (asked <= 0) return limit;
    if (limit <= 0) return asked;
    return asked < limit ? asked : limit;
}

int worker_train(struct worker *w, struct profile *p, uint64_t steps, double seconds,
                 struct rpc_error *e) {
    struct training_budget b = daemon_budget(w->d);
    pthread_mutex_lock(&w->mu);
    int rc = -1;
    if (w->quit) {
        rpc_error_set(e, RPC_SHUTTING_DOWN, "the daemon is shutting down");
    } else if (w->profile) {
        rpc_error_set(e, RPC_BUSY, "profile %s is training; train_stop first", w->profile->name);
    } else {
        w->profile = p;
        w->stop = 0;
        atomic_store(&w->cancel, 0);
        w->run_started = mono_now();
        w->status = (struct train_status){.state = TRAIN_RUNNING};
        snprintf(w->status.profile, sizeof w->status.profile, "%s", p->name);
        w->status.max_steps = (uint64_t)cap((double)steps, (double)b.max_steps);
        w->status.max_seconds = cap(seconds, b.max_seconds);
        pthread_cond_broadcast(&w->cond);
        rc = 0;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int worker_stop(struct worker *w, int wait) {
    pthread_mutex_lock(&w->mu);
    int running = w->profile != NULL;
    if (running) {
        w->stop = 1;
        w->status.state = TRAIN_STOPPING;
        atomic_store(&w->cancel, 1);
        pthread_cond_broadcast(&w->cond);
        while (wait && w->profile) pthread_cond_wait(&w->cond, &w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return running ? 0 : -1;
}

void worker_quit(struct worker *w) {
    pthread_mutex_lock(&w->mu);
    w->quit = 1;
    if (w->profile) w->status.state = TRAIN_STOPPING;
    atomic_store(&w->cancel, 1);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

int worker_exited(struct worker *w) {
    pthread_mutex_lock(&w->mu);
    int exited = w->exited;
    pthread_mutex_unlock(&w->mu);
    return exited;
}

void worker_join(struct worker *w) {
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
}

void worker_poke(struct worker *w) {
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

void worker_status(struct worker *w, struct train_status *out) {
    pthread_mutex_lock(&w->mu);
    *out = w->status;
    if (w->status.state != TRAIN_IDLE) out->run_seconds = mono_now() - w->run_started;
    pthread_mutex_unlock(&w->mu);
}
