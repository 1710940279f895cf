#define _POSIX_C_SOURCE 200809L
#include "profile.h"

#include "fsutil.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Hard cap on one journal record, independent of the reloadable request limit: lowering
 * limits.max_request_bytes must never make an existing journal unreadable. */
#define JOURNAL_MAX_RECORD ((uint64_t)1 << 28)

void profile_path(const struct profile *p, const char *file, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", p->dir, file);
}

static void stats_update(struct profile *p, void (*fn)(struct profile_stats *s, void *ctx), void *ctx) {
    pthread_mutex_lock(&p->stats_mu);
    fn(&p->stats, ctx);
    pthread_mutex_unlock(&p->stats_mu);
}

void profile_stats_get(struct profile *p, struct profile_stats *out) {
    pthread_mutex_lock(&p->stats_mu);
    *out = p->stats;
    pthread_mutex_unlock(&p->stats_mu);
}

struct counted {
    int32_t split;
    uint64_t n;
    const struct journal *j;
};

static void count_examples(struct profile_stats *s, void *ctx) {
    const struct counted *c = ctx;
    if (c->split == PRGE_SPLIT_DEV) s->n_dev += c->n;
    else s->n_train += c->n;
    s->journal_bytes = c->j->size;
    s->journal_records = c->j->n_records;
}

static int replay_record(int32_t split, const char *jsonl, size_t len, void *ctx) {
    struct profile *p = ctx;
    if (split != PRGE_SPLIT_TRAIN && split != PRGE_SPLIT_DEV) {
        log_error("profile %s: journal record with unknown split %d", p->name, split);
        return -1;
    }
    size_t n = 0;
    prge_status st = prge_trainer_add_jsonl(p->trainer, split, jsonl, len, &n);
    if (st != PRGE_OK) {
        /* Every record was accepted by this same call before it was journaled, so a refusal
         * now means the trainer options changed in a way that no longer fits the data. */
        log_error("profile %s: the trainer refuses journaled examples: %s", p->name, prge_last_error());
        return -1;
    }
    struct counted c = {split, n, &p->journal};
    stats_update(p, count_examples, &c);
    return 0;
}

static void set_steps(struct profile_stats *s, void *ctx) {
    s->step = s->checkpoint_step = *(uint64_t *)ctx;
}

int profile_refresh_adapter_locked(struct profile *p, struct rpc_error *e) {
    prge_adapter *fresh = NULL;
    prge_status st = prge_trainer_get_adapter(p->trainer, PRGE_ADAPTER_CURRENT, &fresh);
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "copying the trained adapter");
        return -1;
    }
    pthread_mutex_lock(&p->adapter_mu);
    prge_adapter *old = p->adapter;
    p->adapter = fresh;
    pthread_mutex_unlock(&p->adapter_mu);
    prge_adapter_free(old);
    return 0;
}

static void profile_free(struct profile *p) {
    if (!p) return;
    prge_adapter_free(p->adapter);
    prge_trainer_free(p->trainer);
    journal_close(&p->journal);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->adapter_mu);
    pthread_mutex_destroy(&p->stats_mu);
    free(p->dir);
    free(p);
}

/* Creates the directory if needed, then rebuilds the profile from disk: trainer from the
 * config, checkpoint (if any), examples from the journal, adapter copy for inference. */
static struct profile *profile_open(struct profiles *ps, const char *name, struct rpc_error *e) {
    struct profile *p = calloc(1, sizeof *p);
    if (!p) {
        rpc_error_set(e, RPC_INTERNAL, "out of memory");
        return NULL;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->adapter_mu, NULL);
    pthread_mutex_init(&p->stats_mu, NULL);
    p->journal.fd = -1;
    p->stats.last_loss = NAN;
    size_t dlen = strlen(ps->root) + 1 + strlen(name) + 1;
    p->dir = malloc(dlen);
    if (!p->dir) {
        rpc_error_set(e, RPC_INTERNAL, "out of memory");
        goto fail;
    }
    snprintf(p->dir, dlen, "%s/%s", ps->root, name);
    if (mkdir_durable(p->dir) < 0) {
        rpc_error_set(e, RPC_INTERNAL, "profile %s: %s: %s", name, p->dir, strerror(errno));
        goto fail;
    }
    prge_status st = prge_trainer_create(ps->model, NULL, ps->trainer_json, &p->trainer);
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "creating the trainer (config key \"trainer\")");
        goto fail;
    }
    char path[PATH_MAX];
    profile_path(p, "checkpoint.gguf", path, sizeof path);
    if (access(path, F_OK) == 0) {
        /* Refusing to start beats starting fresh: the next checkpoint would overwrite the
         * user's trained adapter. */
        st = prge_trainer_load_checkpoint(p->trainer, path);
        if (st != PRGE_OK) {
            rpc_error_library(e, st, path);
            goto fail;
        }
        uint64_t step = 0;
        prge_trainer_n_steps(p->trainer, &step);
        stats_update(p, set_steps, &step);
    }
    profile_path(p, "journal", path, sizeof path);
    char err[512];
    if (journal_open(&p->journal, path, JOURNAL_MAX_RECORD, replay_record, p, err, sizeof err) < 0) {
        rpc_error_set(e, RPC_INTERNAL, "profile %s: %s", name, err);
        goto fail;
    }
    struct counted none = {PRGE_SPLIT_TRAIN, 0, &p->journal};
    stats_update(p, count_examples, &none);
    if (profile_refresh_adapter_locked(p, e) < 0) goto fail;
    struct profile_stats s;
    profile_stats_get(p, &s);
    log_info("profile %s: %llu train + %llu dev examples from %llu journal records, step %llu",
             name, (unsigned long long)s.n_train, (unsigned long long)s.n_dev,
             (unsigned long long)s.journal_records, (unsigned long long)s.step);
    return p;
fail:
    profile_free(p);
    return NULL;
}

static struct profile *find_locked(struct profiles *ps, const char *name) {
    for (struct profile *p = ps->head; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
}

static void append_locked(struct profiles *ps, struct profile *p) {
    struct profile **tail = &ps->head;
    while (*tail) tail = &(*tail)->next;
    *tail = p;
}

int profiles_get(struct profiles *ps, const char *name, int create, struct profile **out,
                 int *created, struct rpc_error *e) {
    if (created) *created = 0;
    if (!profile_name_valid(name)) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "profile name \"%s\": use 1..64 of [A-Za-z0-9_.-], not starting with '.'", name);
        return -1;
    }
    pthread_mutex_lock(&ps->mu);
    struct profile *p = find_locked(ps, name);
    if (!p && create) {
        p = profile_open(ps, name, e);
        if (p) {
            append_locked(ps, p);
            if (created) *created = 1;
            log_info("profile %s: created", name);
        }
    } else if (!p) {
        rpc_error_set(e, RPC_NO_PROFILE, "no profile \"%s\" (select_profile creates one)", name);
    }
    pthread_mutex_unlock(&ps->mu);
    *out = p;
    return p ? 0 : -1;
}

void profiles_foreach(struct profiles *ps, void (*fn)(struct profile *p, void *ctx), void *ctx) {
    pthread_mutex_lock(&ps->mu);
    for (struct profile *p = ps->head; p; p = p->next) fn(p, ctx);
    pthread_mutex_unlock(&ps->mu);
}

int profiles_init(struct profiles *ps, prge_model *model, const struct config *cfg, char *err,
                  size_t errlen) {
    memset(ps, 0, sizeof *ps);
    pthread_mutex_init(&ps->mu, NULL);
    ps->model = model;
    ps->trainer_json = cfg->trainer_json;
    size_t n = strlen(cfg->state_dir) + sizeof "/profiles";
    ps->root = malloc(n);
    if (!ps->root) return snprintf(err, errlen, "out of memory"), -1;
    snprintf(ps->root, n, "%s/profiles", cfg->state_dir);
    if (mkdir_durable(ps->root) < 0)
        return snprintf(err, errlen, "state_dir: %s: %s", ps->root, strerror(errno)), -1;
    /* Sorted, so profiles load (and list) in a stable order. */
    struct dirent **names = NULL;
    int count = scandir(ps->root, &names, NULL, alphasort);
    if (count < 0) return snprintf(err, errlen, "%s: %s", ps->root, strerror(errno)), -1;
    int rc = 0;
    for (int i = 0; i < count; i++) {
        const char *name = names[i]->d_name;
        if (rc == 0 && name[0] != '.') {
            if (!profile_name_valid(name)) {
                log_warn("%s/%s: not a profile name, ignored", ps->root, name);
            } else {
                struct rpc_error e;
                struct profile *p;
                if (profiles_get(ps, name, 1, &p, NULL, &e) < 0) {
                    snprintf(err, errlen, "profile %s: %s", name, e.message);
                    rc = -1;
                }
            }
        }
        free(names[i]);
    }
    free(names);
    if (rc < 0) return -1;
    struct rpc_error e;
    struct profile *p;
    if (profiles_get(ps, cfg->default_profile, 1, &p, NULL, &e) < 0)
        return snprintf(err, errlen, "default_profile: %s", e.message), -1;
    return 0;
}

void profiles_free(struct profiles *ps) {
    struct profile *p = ps->head;
    while (p) {
        struct profile *next = p->next;
        profile_free(p);
        p = next;
    }
    free(ps->root);
    pthread_mutex_destroy(&ps->mu);
    memset(ps, 0, sizeof *ps);
}

static void set_degraded(struct profile_stats *s, void *ctx) {
    (void)ctx;
    s->degraded = 1;
}

int profile_add_examples(struct profile *p, int32_t split, const char *jsonl, size_t len,
                         struct rpc_error *e) {
    pthread_mutex_lock(&p->mu);
    int rc = -1;
    struct profile_stats s;
    profile_stats_get(p, &s);
    if (s.degraded) {
        rpc_error_set(e, RPC_DURABILITY, "profile %s: an earlier journal write failed; restart the daemon", p->name);
        goto out;
    }
    /* The trainer validates first (all or nothing), so the journal only holds examples it
     * accepts; then the record must reach the disk before we acknowledge. */
    size_t n = 0;
    prge_status st = prge_trainer_add_jsonl(p->trainer, split, jsonl, len, &n);
    if (st != PRGE_OK) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.examples: %s", prge_last_error());
        goto out;
    }
    char err[256];
    if (journal_append(&p->journal, split, jsonl, len, err, sizeof err) < 0) {
        /* The trainer now holds examples the disk does not: refuse more until a restart
         * rebuilds memory from the journal, the source of truth. */
        stats_update(p, set_degraded, NULL);
        log_error("profile %s: %s", p->name, err);
        rpc_error_set(e, RPC_DURABILITY, "profile %s: %s; nothing was acknowledged", p->name, err);
        goto out;
    }
    struct counted c = {split, n, &p->journal};
    stats_update(p, count_examples, &c);
    rc = 0;
out:
    pthread_mutex_unlock(&p->mu);
    return rc;
}

static void set_checkpoint(struct profile_stats *s, void *ctx) {
    s->checkpoint_step = *(uint64_t *)ctx;
}

int profile_checkpoint_locked(struct profile *p, int force, struct rpc_error *e) {
    uint64_t step = 0;
    prge_status st = prge_trainer_n_steps(p->trainer, &step);
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "reading the step count");
        return -1;
    }
    struct profile_stats s;
    profile_stats_get(p, &s);
    char path[PATH_MAX];
    profile_path(p, "checkpoint.gguf", path, sizeof path);
    if (!force && step == s.checkpoint_step && access(path, F_OK) == 0) return 0;
    /* checkpoint.gguf is what a restart loads, so it goes first; adapter.gguf is the copy for
     * users and llama.cpp. */
    st = prge_trainer_save_checkpoint(p->trainer, path);
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "writing the checkpoint");
        return -1;
    }
    profile_path(p, "adapter.gguf", path, sizeof path);
    st = prge_adapter_save(p->adapter, path);
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "writing the adapter");
        return -1;
    }
    stats_update(p, set_checkpoint, &step);
    log_info("profile %s: checkpoint at step %llu", p->name, (unsigned long long)step);
    return 0;
}
