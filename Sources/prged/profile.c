#define _POSIX_C_SOURCE 200809L
#include "profile.h"

#include "fsutil.h"
#include "jsonparse.h"
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
/* The validator keeps every example it checked; past this many it is replaced by a fresh one. */
#define VALIDATOR_MAX_EXAMPLES 20000

struct pending {
    struct pending *next;
    int32_t split;
    uint64_t n;          /* examples in it */
    uint64_t end_offset; /* journal offset just past its record */
    size_t len;
    char jsonl[];
};

void profile_path(const struct profile *p, const char *file, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", p->dir, file);
}

void profile_stats_get(struct profile *p, struct profile_stats *out) {
    pthread_mutex_lock(&p->stats_mu);
    *out = p->stats;
    pthread_mutex_unlock(&p->stats_mu);
}

/* ---- examples ---------------------------------------------------------------------------- */

static int apply(struct profile *p, int32_t split, const char *jsonl, size_t len) {
    prge_status st = prge_trainer_add_jsonl(p->trainer, split, jsonl, len, NULL);
    if (st != PRGE_OK) {
        /* Each record passed the same checks before it was journaled, so a refusal means the
         * trainer options changed in a way that no longer fits the data. */
        log_error("profile %s: the trainer refuses journaled examples: %s", p->name, prge_last_error());
        return -1;
    }
    return 0;
}

/* Hands the pending records to the trainer. Caller holds mu. */
static void drain(struct profile *p) {
    pthread_mutex_lock(&p->journal_mu);
    struct pending *q = p->pending;
    p->pending = NULL;
    p->pending_tail = &p->pending;
    pthread_mutex_unlock(&p->journal_mu);
    while (q) {
        struct pending *next = q->next;
        if (apply(p, q->split, q->jsonl, q->len) < 0) {
            pthread_mutex_lock(&p->stats_mu);
            p->stats.degraded = 1;
            pthread_mutex_unlock(&p->stats_mu);
        }
        p->applied_offset = q->end_offset;
        pthread_mutex_lock(&p->stats_mu);
        p->stats.n_pending -= q->n;
        pthread_mutex_unlock(&p->stats_mu);
        free(q);
        q = next;
    }
}

static int has_pending(struct profile *p) {
    pthread_mutex_lock(&p->journal_mu);
    int any = p->pending != NULL;
    pthread_mutex_unlock(&p->journal_mu);
    return any;
}

void profile_lock(struct profile *p) {
    pthread_mutex_lock(&p->mu);
    drain(p);
}

void profile_unlock(struct profile *p) {
    /* Records queued after our drain but before our unlock would wait for the next holder;
     * so look again after unlocking, and take them in if nobody else holds the lock (a holder
     * drains when it unlocks). */
    for (;;) {
        drain(p);
        pthread_mutex_unlock(&p->mu);
        if (!has_pending(p) || pthread_mutex_trylock(&p->mu) != 0) return;
    }
}

/* The validator: the configured trainer options with a rank-1 adapter on one projection of
 * one layer, since it never trains. Caller holds validator_mu. */
static int validator_renew(struct profiles *ps, struct rpc_error *e) {
    prge_trainer_free(ps->validator);
    ps->validator = NULL;
    ps->validator_examples = 0;
    prge_status st = prge_trainer_create(ps->model, NULL, ps->validator_json, &ps->validator);
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "creating the example validator");
        return -1;
    }
    return 0;
}

static int validate(struct profiles *ps, int32_t split, const char *jsonl, size_t len, uint64_t n,
                    struct rpc_error *e) {
    pthread_mutex_lock(&ps->validator_mu);
    int rc = -1;
    if ((!ps->validator || ps->validator_examples + n > VALIDATOR_MAX_EXAMPLES) &&
        validator_renew(ps, e) < 0)
        goto out;
    prge_status st = prge_trainer_add_jsonl(ps->validator, split, jsonl, len, NULL);
    if (st != PRGE_OK) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.examples: %s", prge_last_error());
        goto out;
    }
    ps->validator_examples += n;
    rc = 0;
out:
    pthread_mutex_unlock(&ps->validator_mu);
    return rc;
}

int profile_add_examples(struct profiles *ps, struct profile *p, int32_t split, const char *jsonl,
                         size_t len, uint64_t n, struct rpc_error *e) {
    if (validate(ps, split, jsonl, len, n, e) < 0) return -1;
    struct pending *q = malloc(sizeof *q + len);
    if (!q) {
        rpc_error_set(e, RPC_INTERNAL, "out of memory");
        return -1;
    }
    q->next = NULL;
    q->split = split;
    q->n = n;
    q->len = len;
    memcpy(q->jsonl, jsonl, len);

    pthread_mutex_lock(&p->journal_mu);
    struct profile_stats s;
    profile_stats_get(p, &s);
    char err[256];
    int rc = -1;
    if (s.degraded) {
        rpc_error_set(e, RPC_DURABILITY, "profile %s: the journal failed earlier; restart the daemon", p->name);
    } else if (journal_append(&p->journal, split, jsonl, len, err, sizeof err) < 0) {
        /* After a failed fsync the file's state is unknown (the kernel may have dropped the
         * dirty pages): no more writes until a restart re-reads what is really there. */
        log_error("profile %s: %s", p->name, err);
        rpc_error_set(e, RPC_DURABILITY, "profile %s: %s; nothing was acknowledged", p->name, err);
        pthread_mutex_lock(&p->stats_mu);
        p->stats.degraded = 1;
        pthread_mutex_unlock(&p->stats_mu);
    } else {
        q->end_offset = p->journal.size;
        *p->pending_tail = q;
        p->pending_tail = &q->next;
        q = NULL;
        pthread_mutex_lock(&p->stats_mu);
        if (split == PRGE_SPLIT_DEV) p->stats.n_dev += n;
        else p->stats.n_train += n;
        p->stats.n_pending += n;
        p->stats.journal_bytes = p->journal.size;
        p->stats.journal_records = p->journal.n_records;
        pthread_mutex_unlock(&p->stats_mu);
        rc = 0;
    }
    pthread_mutex_unlock(&p->journal_mu);
    free(q);
    /* Into the trainer now if it is free; otherwise its holder does it when it lets go. */
    if (rc == 0 && pthread_mutex_trylock(&p->mu) == 0) profile_unlock(p);
    return rc;
}

/* ---- adapter and checkpoints ------------------------------------------------------------- */

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

/* Parses "checkpoint-<16 hex digits>.gguf"; returns 1 and its offset if name is one. */
static int checkpoint_name(const char *name, uint64_t *offset) {
    unsigned long long x;
    int end = 0;
    if (strlen(name) != strlen("checkpoint-0123456789abcdef.gguf") ||
        sscanf(name, "checkpoint-%16llx.gguf%n", &x, &end) != 1 || end != (int)strlen(name))
        return 0;
    *offset = (uint64_t)x;
    return 1;
}

static void checkpoint_path(const struct profile *p, uint64_t offset, char *buf, size_t size) {
    snprintf(buf, size, "%s/checkpoint-%016llx.gguf", p->dir, (unsigned long long)offset);
}

/* Finds the newest checkpoint file (returns 0 if none); with remove_older, instead deletes
 * every checkpoint but *newest. */
static int scan_checkpoints(struct profile *p, int remove_older, uint64_t *newest) {
    DIR *dir = opendir(p->dir);
    if (!dir) return 0;
    int found = 0;
    uint64_t x;
    for (struct dirent *de; (de = readdir(dir));) {
        if (!checkpoint_name(de->d_name, &x)) continue;
        if (remove_older && x != *newest) {
            char path[PATH_MAX];
            checkpoint_path(p, x, path, sizeof path);
            unlink(path);
        } else if (!remove_older && (!found || x > *newest)) {
            *newest = x;
            found = 1;
        }
    }
    closedir(dir);
    return found;
}

/* The library's atomic writes go through "<file>.tmp-<pid>"; a crash mid-write leaves one
 * behind. We hold the state_dir lock, so no other writer can own them. */
static void remove_stale_temps(struct profile *p) {
    DIR *dir = opendir(p->dir);
    if (!dir) return;
    for (struct dirent *de; (de = readdir(dir));) {
        if (!strstr(de->d_name, ".gguf.tmp-")) continue;
        char path[PATH_MAX];
        profile_path(p, de->d_name, path, sizeof path);
        if (unlink(path) == 0) log_info("profile %s: removed %s, left by a crash", p->name, de->d_name);
    }
    closedir(dir);
}

int profile_checkpoint_locked(struct profile *p, int force, struct rpc_error *e) {
    struct profile_stats s;
    profile_stats_get(p, &s);
    uint64_t step = 0;
    prge_status st = prge_trainer_n_steps(p->trainer, &step);
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "reading the step count");
        return -1;
    }
    /* Examples added since need no new checkpoint: a restart replays them after resuming. */
    if (!force && step == s.checkpoint_step) return 0;
    /* The checkpoint is what a restart loads, so it goes first; adapter.gguf is the copy for
     * users and llama.cpp. */
    char path[PATH_MAX];
    uint64_t offset = p->applied_offset;
    checkpoint_path(p, offset, path, sizeof path);
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
    if (p->has_checkpoint && p->checkpoint_offset != offset) {
        /* Not synced: if it comes back after a power cut, the larger offset still wins. */
        checkpoint_path(p, p->checkpoint_offset, path, sizeof path);
        unlink(path);
    }
    p->has_checkpoint = 1;
    p->checkpoint_offset = offset;
    pthread_mutex_lock(&p->stats_mu);
    p->stats.checkpoint_step = step;
    pthread_mutex_unlock(&p->stats_mu);
    log_info("profile %s: checkpoint at step %llu", p->name, (unsigned long long)step);
    return 0;
}

/* ---- opening ----------------------------------------------------------------------------- */

/* While a profile opens, the replay feeds the trainer and resumes the checkpoint at its offset. */
struct open_ctx {
    struct profile *p;
    int pending;       /* a checkpoint waits for the replay to reach its offset */
    uint64_t offset;
    char path[PATH_MAX];
    int resume_failed;
    struct rpc_error *e;
};

static int resume(struct open_ctx *o) {
    o->pending = 0;
    /* Refusing to start beats starting fresh: the next checkpoint would overwrite the user's
     * trained adapter. */
    prge_status st = prge_trainer_load_checkpoint(o->p->trainer, o->path);
    if (st != PRGE_OK) {
        rpc_error_library(o->e, st, "resuming the checkpoint");
        o->resume_failed = 1;
        return -1;
    }
    uint64_t step = 0;
    prge_trainer_n_steps(o->p->trainer, &step);
    o->p->stats.step = o->p->stats.checkpoint_step = step;
    o->p->has_checkpoint = 1;
    o->p->checkpoint_offset = o->offset;
    return 0;
}

static int replay_record(uint64_t offset, int32_t split, const char *jsonl, size_t len, void *ctx) {
    struct open_ctx *o = ctx;
    struct profile *p = o->p;
    if (o->pending && offset >= o->offset && resume(o) < 0) return -1;
    if (split != PRGE_SPLIT_TRAIN && split != PRGE_SPLIT_DEV) {
        log_error("profile %s: journal record with unknown split %d", p->name, split);
        return -1;
    }
    if (apply(p, split, jsonl, len) < 0) return -1;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) n += jsonl[i] == '\n';
    if (split == PRGE_SPLIT_DEV) p->stats.n_dev += n;
    else p->stats.n_train += n;
    return 0;
}

static void profile_free(struct profile *p) {
    if (!p) return;
    while (p->pending) {
        struct pending *next = p->pending->next;
        free(p->pending);
        p->pending = next;
    }
    prge_adapter_free(p->adapter);
    prge_trainer_free(p->trainer);
    journal_close(&p->journal);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->journal_mu);
    pthread_mutex_destroy(&p->adapter_mu);
    pthread_mutex_destroy(&p->stats_mu);
    free(p->dir);
    free(p);
}

/* Creates the directory if needed, then rebuilds the profile from disk: a trainer from the
 * config, the journal's examples, the checkpoint resumed at its offset, the inference copy of
 * the adapter. Nobody else sees the profile yet, so no locks. */
static struct profile *profile_open(struct profiles *ps, const char *name, struct rpc_error *e) {
    struct profile *p = calloc(1, sizeof *p);
    if (!p) {
        rpc_error_set(e, RPC_INTERNAL, "out of memory");
        return NULL;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->journal_mu, NULL);
    pthread_mutex_init(&p->adapter_mu, NULL);
    pthread_mutex_init(&p->stats_mu, NULL);
    p->pending_tail = &p->pending;
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
    struct open_ctx o = {.p = p, .e = e};
    o.pending = scan_checkpoints(p, 0, &o.offset);
    if (o.pending) checkpoint_path(p, o.offset, o.path, sizeof o.path);
    char path[PATH_MAX], err[512];
    profile_path(p, "journal", path, sizeof path);
    if (journal_open(&p->journal, path, JOURNAL_MAX_RECORD, replay_record, &o, err, sizeof err) < 0) {
        if (!o.resume_failed) rpc_error_set(e, RPC_INTERNAL, "profile %s: %s", name, err);
        goto fail;
    }
    p->applied_offset = p->journal.size;
    if (o.pending) {
        /* A checkpoint covers journaled records only, so its offset cannot be past the end. */
        if (o.offset != p->journal.size) {
            rpc_error_set(e, RPC_INTERNAL, "profile %s: %s is past the end of the journal (%llu bytes)",
                          name, o.path, (unsigned long long)p->journal.size);
            goto fail;
        }
        if (resume(&o) < 0) goto fail;
    }
    if (p->has_checkpoint) scan_checkpoints(p, 1, &p->checkpoint_offset);
    remove_stale_temps(p);
    p->stats.journal_bytes = p->journal.size;
    p->stats.journal_records = p->journal.n_records;
    if (profile_refresh_adapter_locked(p, e) < 0) goto fail;
    log_info("profile %s: %llu train + %llu dev examples from %llu journal records, step %llu", name,
             (unsigned long long)p->stats.n_train, (unsigned long long)p->stats.n_dev,
             (unsigned long long)p->stats.journal_records, (unsigned long long)p->stats.step);
    return p;
fail:
    profile_free(p);
    return NULL;
}

/* ---- the list ---------------------------------------------------------------------------- */

static struct profile *find_locked(struct profiles *ps, const char *name) {
    for (struct profile *p = ps->head; p; p = p->next)
        if (strcmp(p->name, name) == 0) return p;
    return NULL;
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
            struct profile **tail = &ps->head;
            while (*tail) tail = &(*tail)->next;
            *tail = p;
            if (created) *created = 1;
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

/* The trainer options with "adapter" replaced by the smallest adapter there is. */
static char *make_validator_json(const char *trainer_json) {
    char err[256];
    struct json_object *o = json_parse_strict(trainer_json, strlen(trainer_json), err, sizeof err);
    if (!o) return NULL;
    struct json_object *a = json_object_new_object(), *targets = json_object_new_array(),
                       *layers = json_object_new_array();
    json_object_array_add(targets, json_object_new_string("q"));
    json_object_array_add(layers, json_object_new_int(0));
    json_object_object_add(a, "rank", json_object_new_int(1));
    json_object_object_add(a, "targets", targets);
    json_object_object_add(a, "layers", layers);
    json_object_object_add(o, "adapter", a);
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

int profiles_init(struct profiles *ps, prge_model *model, const struct config *cfg, char *err,
                  size_t errlen) {
    memset(ps, 0, sizeof *ps);
    pthread_mutex_init(&ps->mu, NULL);
    pthread_mutex_init(&ps->validator_mu, NULL);
    ps->model = model;
    ps->trainer_json = cfg->trainer_json;
    size_t n = strlen(cfg->state_dir) + sizeof "/profiles";
    ps->root = malloc(n);
    ps->validator_json = make_validator_json(cfg->trainer_json);
    if (!ps->root || !ps->validator_json) return snprintf(err, errlen, "out of memory"), -1;
    snprintf(ps->root, n, "%s/profiles", cfg->state_dir);
    if (mkdir_durable(ps->root) < 0)
        return snprintf(err, errlen, "state_dir: %s: %s", ps->root, strerror(errno)), -1;
    struct rpc_error e;
    if (validator_renew(ps, &e) < 0) return snprintf(err, errlen, "%s", e.message), -1;
    /* Sorted, so profiles load (and list) in a stable order. */
    struct dirent **names = NULL;
    int count = scandir(ps->root, &names, NULL, alphasort);
    if (count < 0) return snprintf(err, errlen, "%s: %s", ps->root, strerror(errno)), -1;
    int rc = 0;
    for (int i = 0; i < count; i++) {
        const char *name = names[i]->d_name;
        if (rc == 0 && name[0] != '.') {
            struct profile *p;
            if (!profile_name_valid(name)) {
                log_warn("%s/%s: not a profile name, ignored", ps->root, name);
            } else if (profiles_get(ps, name, 1, &p, NULL, &e) < 0) {
                snprintf(err, errlen, "profile %s: %s", name, e.message);
                rc = -1;
            }
        }
        free(names[i]);
    }
    free(names);
    if (rc < 0) return -1;
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
    prge_trainer_free(ps->validator);
    free(ps->validator_json);
    free(ps->root);
    pthread_mutex_destroy(&ps->validator_mu);
    pthread_mutex_destroy(&ps->mu);
    memset(ps, 0, sizeof *ps);
}
