// pool.c: a tiny persistent thread pool (one layer of parallelism, the caller participates).
//
// prge_pool_run is called a few hundred times per forward pass, so a run must cost a few
// microseconds, not a thread creation. Workers spin briefly on a generation counter after each
// run (cheap wake-up for back-to-back runs), then sleep on a condition variable so that idle
// pools do not burn a core. Tasks are handed out with an atomic counter (dynamic scheduling);
// callers that need results independent of the thread count must make each task's output
// independent of which thread runs it (prge_matmul does).
#define _GNU_SOURCE
#include "prge_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PRGE_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define PRGE_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define PRGE_CPU_RELAX() ((void)0)
#endif

// Spins before sleeping. ~1 µs per 30 pauses on Zen 4; 20000 pauses ≈ a few hundred µs.
#define PRGE_POOL_SPIN_WORKER 20000
#define PRGE_POOL_SPIN_MAIN 4000

struct prge_pool {
    int n_threads;
    pthread_t *threads;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;     // workers wait here for a new generation
    pthread_cond_t cv_done;     // the caller waits here for the last worker

    // Current job (written by the caller before the generation bump, read after it).
    prge_task_fn fn;
    void *ctx;
    int64_t n_tasks;

    _Atomic uint64_t generation;    // bumped once per run; odd/even does not matter
    _Atomic int64_t next_task;
    _Atomic int busy;               // workers still inside the current run
    _Atomic int sleepers_done;      // caller is sleeping on cv_done
    _Atomic int stop;
};

static void pool_drain(prge_pool *p) {
    prge_task_fn fn = p->fn;
    void *ctx = p->ctx;
    const int64_t n = p->n_tasks;
    for (;;) {
        int64_t t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= n) break;
        fn(ctx, t);
    }
}

static void *pool_worker(void *arg) {
    prge_pool *p = (prge_pool *)arg;
    // Generation 0 is the pool's creation; a run may be published before this thread starts.
    uint64_t seen = 0;
    for (;;) {
        // Wait for a new generation: spin, then sleep.
        uint64_t g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
            if (++spins < PRGE_POOL_SPIN_WORKER) { PRGE_CPU_RELAX(); continue; }
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
                   !atomic_load_explicit(&p->stop, memory_order_relaxed))
                pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
        g = atomic_load_explicit(&p->generation, memory_order_acquire);
        seen = g;
        pool_drain(p);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_seq_cst) == 1) {
            // Last one out: wake the caller if it went to sleep.
            if (atomic_load_explicit(&p->sleepers_done, memory_order_seq_cst)) {
                pthread_mutex_lock(&p->mu);
                pthread_cond_signal(&p->cv_done);
                pthread_mutex_unlock(&p->mu);
            }
        }
    }
}

prge_pool *prge_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    prge_pool *p = (prge_pool *)calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->next_task, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->sleepers_done, 0);
    atomic_init(&p->stop, 0);
    if (n_threads > 1) {
        p->threads = (pthread_t *)calloc((size_t)(n_threads - 1), sizeof(pthread_t));
        if (!p->threads) { free(p); return NULL; }
        for (int i = 0; i < n_threads - 1; i++) {
            if (pthread_create(&p->threads[i], NULL, pool_worker, p) != 0) {
                p->n_threads = i + 1;   // free only the ones that started
                prge_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void prge_pool_free(prge_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p);
}

int prge_pool_threads(const prge_pool *p) { return p ? p->n_threads : 1; }

void prge_pool_run(prge_pool *p, prge_task_fn fn, void *ctx, int64_t n_tasks) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int64_t t = 0; t < n_tasks; t++) fn(ctx, t);
        return;
    }
    const int workers = p->n_threads - 1;
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->busy, workers, memory_order_relaxed);
    atomic_store_explicit(&p->sleepers_done, 0, memory_order_relaxed);
    // Publish the job (release) and wake any sleeping workers.
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    pool_drain(p);

    // Wait for the workers: spin, then sleep.
    int spins = 0;
    while (atomic_load_explicit(&p->busy, memory_order_acquire) != 0) {
        if (++spins < PRGE_POOL_SPIN_MAIN) { PRGE_CPU_RELAX(); continue; }
        if (spins < PRGE_POOL_SPIN_MAIN + 64) { sched_yield(); continue; }
        pthread_mutex_lock(&p->mu);
        atomic_store_explicit(&p->sleepers_done, 1, memory_order_seq_cst);
        while (atomic_load_explicit(&p->busy, memory_order_seq_cst) != 0)
            pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
        break;
    }
}
