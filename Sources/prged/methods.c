#define _POSIX_C_SOURCE 200809L
#include "methods.h"

#include "log.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- params ------------------------------------------------------------------------------ */

/* Unknown keys are errors, as in the config: a misspelt option must not be ignored. */
static int params_allow(struct json_object *params, const char *const *keys, struct rpc_error *e) {
    json_object_object_foreach(params, key, val) {
        (void)val;
        const char *const *k = keys;
        while (*k && strcmp(*k, key) != 0) k++;
        if (!*k) {
            rpc_error_set(e, RPC_INVALID_PARAMS, "params.%s: unknown key", key);
            return -1;
        }
    }
    return 0;
}

/* A string without NUL bytes (they would silently cut C strings short). *out stays NULL when
 * the key is absent and not required. */
static int param_string(struct json_object *params, const char *key, int required,
                        const char **out, struct rpc_error *e) {
    struct json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(params, key, &v)) {
        if (!required) return 0;
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.%s: required", key);
        return -1;
    }
    if (!json_object_is_type(v, json_type_string) ||
        strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.%s: must be a string (without NUL bytes)", key);
        return -1;
    }
    *out = json_object_get_string(v);
    return 0;
}

static int param_count(struct json_object *params, const char *key, uint64_t max, uint64_t *out,
                       struct rpc_error *e) {
    struct json_object *v;
    if (!json_object_object_get_ex(params, key, &v)) return 0;
    int64_t x = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
    if (x < 0 || (uint64_t)x > max) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.%s: must be an integer in [0, %llu]", key,
                      (unsigned long long)max);
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

static int param_seconds(struct json_object *params, const char *key, double *out,
                         struct rpc_error *e) {
    struct json_object *v;
    if (!json_object_object_get_ex(params, key, &v)) return 0;
    double x = json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)
                   ? json_object_get_double(v) : -1;
    if (!(x >= 0 && x <= 1e9)) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.%s: must be a number of seconds >= 0", key);
        return -1;
    }
    *out = x;
    return 0;
}

/* params.profile, else the session's. */
static int session_profile(struct daemon *d, struct session *s, struct json_object *params,
                           struct profile **p, struct rpc_error *e) {
    const char *name;
    if (param_string(params, "profile", 0, &name, e) < 0) return -1;
    return profiles_get(&d->profiles, name ? name : s->profile, 0, p, NULL, e);
}

/* ---- result helpers ---------------------------------------------------------------------- */

static void add_u64(struct json_object *o, const char *key, uint64_t v) {
    json_object_object_add(o, key, json_object_new_uint64(v));
}

static void add_double(struct json_object *o, const char *key, double v) {
    /* JSON has no NaN: "not yet known" is null. */
    json_object_object_add(o, key, isfinite(v) ? json_object_new_double(v) : NULL);
}

static void add_string(struct json_object *o, const char *key, const char *v) {
    json_object_object_add(o, key, json_object_new_string(v));
}

static struct json_object *profile_json(struct profile *p) {
    struct profile_stats st;
    profile_stats_get(p, &st);
    struct json_object *o = json_object_new_object();
    add_string(o, "name", p->name);
    add_u64(o, "n_train", st.n_train);
    add_u64(o, "n_dev", st.n_dev);
    add_u64(o, "n_pending", st.n_pending);
    add_u64(o, "step", st.step);
    add_u64(o, "checkpoint_step", st.checkpoint_step);
    add_double(o, "last_loss", st.last_loss);
    add_u64(o, "journal_bytes", st.journal_bytes);
    add_u64(o, "journal_records", st.journal_records);
    json_object_object_add(o, "degraded", json_object_new_boolean(st.degraded));
    return o;
}

static void count_one(struct profile *p, void *ctx) {
    (void)p;
    (*(uint64_t *)ctx)++;
}

static const char *const state_names[] = {"idle", "running", "stopping"};

/* ---- methods ----------------------------------------------------------------------------- */

static int m_status(struct daemon *d, struct session *s, struct json_object *params,
                    struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"profile", NULL};
    struct profile *p;
    if (params_allow(params, keys, e) < 0 || session_profile(d, s, params, &p, e) < 0) return -1;
    struct train_status ts;
    worker_status(&d->worker, &ts);
    struct training_budget b = daemon_budget(d);
    struct json_object *r = json_object_new_object(), *t = json_object_new_object(),
                       *bj = json_object_new_object();
    json_object_object_add(r, "abi_version", json_object_new_int(prge_abi_version()));
    add_string(r, "model", d->cfg.model_path);
    add_double(r, "uptime_s", mono_now() - d->started);
    add_u64(r, "clients", d->n_clients);
    uint64_t n_profiles = 0;
    profiles_foreach(&d->profiles, count_one, &n_profiles);
    add_u64(r, "profiles", n_profiles);
    json_object_object_add(r, "profile", profile_json(p));
    add_string(t, "state", state_names[ts.state]);
    add_string(t, "profile", ts.profile);
    add_u64(t, "run_steps", ts.run_steps);
    add_double(t, "run_seconds", ts.run_seconds);
    add_u64(t, "max_steps", ts.max_steps);
    add_double(t, "max_seconds", ts.max_seconds);
    add_string(t, "end_reason", ts.end_reason);
    add_string(t, "error", ts.last_error);
    json_object_object_add(r, "training", t);
    add_u64(bj, "steps_per_minute", (uint64_t)b.steps_per_minute);
    add_u64(bj, "max_steps", (uint64_t)b.max_steps);
    add_double(bj, "max_seconds", b.max_seconds);
    add_double(bj, "refresh_every_s", b.refresh_every_s);
    add_double(bj, "checkpoint_every_s", b.checkpoint_every_s);
    json_object_object_add(r, "budget", bj);
    *result = r;
    return 0;
}

static void list_one(struct profile *p, void *ctx) {
    json_object_array_add(ctx, profile_json(p));
}

static int m_list_profiles(struct daemon *d, struct session *s, struct json_object *params,
                           struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {NULL};
    if (params_allow(params, keys, e) < 0) return -1;
    struct json_object *list = json_object_new_array();
    profiles_foreach(&d->profiles, list_one, list);
    *result = json_object_new_object();
    json_object_object_add(*result, "profiles", list);
    add_string(*result, "selected", s->profile);
    return 0;
}

static int m_select_profile(struct daemon *d, struct session *s, struct json_object *params,
                            struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"name", "create", NULL};
    const char *name;
    struct json_object *v;
    int create = 1, created = 0;
    if (params_allow(params, keys, e) < 0 || param_string(params, "name", 1, &name, e) < 0)
        return -1;
    if (json_object_object_get_ex(params, "create", &v)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            rpc_error_set(e, RPC_INVALID_PARAMS, "params.create: must be a boolean");
            return -1;
        }
        create = json_object_get_boolean(v);
    }
    struct profile *p;
    if (profiles_get(&d->profiles, name, create, &p, &created, e) < 0) return -1;
    snprintf(s->profile, sizeof s->profile, "%s", p->name);
    *result = json_object_new_object();
    add_string(*result, "profile", p->name);
    json_object_object_add(*result, "created", json_object_new_boolean(created));
    return 0;
}

static int m_add_examples(struct daemon *d, struct session *s, struct json_object *params,
                          struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"examples", "split", "profile", NULL};
    const char *split_name;
    struct json_object *ex;
    struct profile *p;
    if (params_allow(params, keys, e) < 0 || param_string(params, "split", 0, &split_name, e) < 0 ||
        session_profile(d, s, params, &p, e) < 0)
        return -1;
    int32_t split = PRGE_SPLIT_TRAIN;
    if (split_name && strcmp(split_name, "dev") == 0) split = PRGE_SPLIT_DEV;
    else if (split_name && strcmp(split_name, "train") != 0) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.split: must be \"train\" or \"dev\"");
        return -1;
    }
    if (!json_object_object_get_ex(params, "examples", &ex) || !json_object_is_type(ex, json_type_array) ||
        json_object_array_length(ex) == 0) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.examples: required, a non-empty array of objects");
        return -1;
    }
    /* One JSONL line per example, as prge_trainer_add_jsonl and the journal take them. */
    size_t n = json_object_array_length(ex), len = 0, cap = 0;
    char *jsonl = NULL;
    for (size_t i = 0; i < n; i++) {
        struct json_object *o = json_object_array_get_idx(ex, i);
        if (!json_object_is_type(o, json_type_object)) {
            rpc_error_set(e, RPC_INVALID_PARAMS, "params.examples[%zu]: must be an object", i);
            free(jsonl);
            return -1;
        }
        size_t m;
        const char *line = json_object_to_json_string_length(
            o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &m);
        if (len + m + 1 > cap) {
            cap = (len + m + 1) * 2;
            char *nb = realloc(jsonl, cap);
            if (!nb) {
                free(jsonl);
                rpc_error_set(e, RPC_INTERNAL, "out of memory");
                return -1;
            }
            jsonl = nb;
        }
        memcpy(jsonl + len, line, m);
        len += m;
        jsonl[len++] = '\n';
    }
    int rc = profile_add_examples(&d->profiles, p, split, jsonl, len, n, e);
    free(jsonl);
    if (rc < 0) return -1;
    struct profile_stats st;
    profile_stats_get(p, &st);
    *result = json_object_new_object();
    add_string(*result, "profile", p->name);
    add_u64(*result, "added", n);
    add_u64(*result, "n_train", st.n_train);
    add_u64(*result, "n_dev", st.n_dev);
    return 0;
}

static int m_train_start(struct daemon *d, struct session *s, struct json_object *params,
                         struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"profile", "steps", "seconds", NULL};
    uint64_t steps = 0;
    double seconds = 0;
    struct profile *p;
    if (params_allow(params, keys, e) < 0 || param_count(params, "steps", (uint64_t)1e12, &steps, e) < 0 ||
        param_seconds(params, "seconds", &seconds, e) < 0 || session_profile(d, s, params, &p, e) < 0)
        return -1;
    struct profile_stats st;
    profile_stats_get(p, &st);
    if (st.n_train == 0) {
        rpc_error_set(e, RPC_STATE, "profile %s has no training examples (add_examples first)", p->name);
        return -1;
    }
    if (worker_train(&d->worker, p, steps, seconds, e) < 0) return -1;
    struct train_status ts;
    worker_status(&d->worker, &ts);
    *result = json_object_new_object();
    add_string(*result, "profile", p->name);
    add_u64(*result, "max_steps", ts.max_steps);
    add_double(*result, "max_seconds", ts.max_seconds);
    return 0;
}

static int m_train_stop(struct daemon *d, struct session *s, struct json_object *params,
                        struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {NULL};
    (void)s;
    if (params_allow(params, keys, e) < 0) return -1;
    int was_running = worker_stop(&d->worker, 1) == 0;
    struct train_status ts;
    worker_status(&d->worker, &ts);
    *result = json_object_new_object();
    json_object_object_add(*result, "was_training", json_object_new_boolean(was_running));
    add_string(*result, "profile", ts.profile);
    add_u64(*result, "run_steps", ts.run_steps);
    add_string(*result, "error", ts.last_error);
    struct profile *p;
    if (ts.profile[0] && profiles_get(&d->profiles, ts.profile, 0, &p, NULL, e) == 0) {
        struct profile_stats st;
        profile_stats_get(p, &st);
        add_u64(*result, "step", st.step);
        add_u64(*result, "checkpoint_step", st.checkpoint_step);
    }
    return 0;
}

/* Pauses training after its current step (gate.h) and holds the profile's adapter copy. */
static void inference_begin(struct daemon *d, struct profile *p) {
    gate_enter_inference(&d->gate);
    pthread_mutex_lock(&p->adapter_mu);
}

static void inference_end(struct daemon *d, struct profile *p) {
    pthread_mutex_unlock(&p->adapter_mu);
    gate_leave_inference(&d->gate);
}

#define MAX_LABELS 256

static int m_classify(struct daemon *d, struct session *s, struct json_object *params,
                      struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"prompt", "labels", "profile", NULL};
    const char *prompt;
    struct json_object *lv;
    struct profile *p;
    if (params_allow(params, keys, e) < 0 || param_string(params, "prompt", 1, &prompt, e) < 0 ||
        session_profile(d, s, params, &p, e) < 0)
        return -1;
    if (!json_object_object_get_ex(params, "labels", &lv) || !json_object_is_type(lv, json_type_array) ||
        json_object_array_length(lv) == 0 || json_object_array_length(lv) > MAX_LABELS) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.labels: required, an array of 1..%d strings", MAX_LABELS);
        return -1;
    }
    size_t n = json_object_array_length(lv);
    const char *labels[MAX_LABELS];
    float scores[MAX_LABELS];
    for (size_t i = 0; i < n; i++) {
        struct json_object *l = json_object_array_get_idx(lv, i);
        if (!json_object_is_type(l, json_type_string) ||
            strlen(json_object_get_string(l)) != (size_t)json_object_get_string_len(l)) {
            rpc_error_set(e, RPC_INVALID_PARAMS, "params.labels[%zu]: must be a string", i);
            return -1;
        }
        labels[i] = json_object_get_string(l);
    }
    size_t best = 0;
    inference_begin(d, p);
    prge_status st = prge_classify(d->model, p->adapter, prompt, labels, n, scores, &best);
    if (st != PRGE_OK) rpc_error_library(e, st, "classify");
    inference_end(d, p);
    if (st != PRGE_OK) return -1;
    struct json_object *sc = json_object_new_array();
    for (size_t i = 0; i < n; i++) json_object_array_add(sc, json_object_new_double(scores[i]));
    *result = json_object_new_object();
    add_u64(*result, "best", best);
    add_string(*result, "label", labels[best]);
    json_object_object_add(*result, "scores", sc);
    add_string(*result, "profile", p->name);
    return 0;
}

static int m_generate(struct daemon *d, struct session *s, struct json_object *params,
                      struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"prompt", "n_predict", "profile", NULL};
    const char *prompt;
    uint64_t n_predict = 32;
    struct profile *p;
    struct limits lim = daemon_limits(d);
    if (params_allow(params, keys, e) < 0 || param_string(params, "prompt", 1, &prompt, e) < 0 ||
        param_count(params, "n_predict", (uint64_t)lim.max_generate_tokens, &n_predict, e) < 0 ||
        session_profile(d, s, params, &p, e) < 0)
        return -1;
    /* A guess that fits nearly every output; a longer one is regenerated with the exact size
     * (greedy decoding gives the same text again). */
    size_t size = 64 * n_predict + 256, len = 0;
    char *buf = NULL;
    prge_status st = PRGE_ERR_OUT_OF_MEMORY;
    inference_begin(d, p);
    for (int attempt = 0; attempt < 2; attempt++) {
        char *nb = realloc(buf, size);
        if (!nb) {
            st = PRGE_ERR_OUT_OF_MEMORY;
            break;
        }
        buf = nb;
        st = prge_generate(d->model, p->adapter, prompt, (int32_t)n_predict, buf, size, &len);
        if (st != PRGE_ERR_BUFFER_TOO_SMALL) break;
        size = len + 1;
    }
    if (st != PRGE_OK) rpc_error_library(e, st, "generate");
    inference_end(d, p);
    if (st == PRGE_OK) {
        *result = json_object_new_object();
        json_object_object_add(*result, "text", json_object_new_string_len(buf, (int)len));
        add_string(*result, "profile", p->name);
    }
    free(buf);
    return st == PRGE_OK ? 0 : -1;
}

static int m_save_adapter(struct daemon *d, struct session *s, struct json_object *params,
                          struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"profile", NULL};
    struct profile *p;
    if (params_allow(params, keys, e) < 0 || session_profile(d, s, params, &p, e) < 0) return -1;
    profile_lock(p);
    int rc = profile_checkpoint_locked(p, 1, e);
    profile_unlock(p);
    if (rc < 0) return -1;
    char path[PATH_MAX];
    profile_path(p, "adapter.gguf", path, sizeof path);
    struct profile_stats st;
    profile_stats_get(p, &st);
    *result = json_object_new_object();
    add_string(*result, "profile", p->name);
    add_string(*result, "path", path);
    add_u64(*result, "step", st.checkpoint_step);
    return 0;
}

static int m_export_adapter(struct daemon *d, struct session *s, struct json_object *params,
                            struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {"path", "which", "profile", NULL};
    const char *path, *which;
    struct profile *p;
    if (params_allow(params, keys, e) < 0 || param_string(params, "path", 1, &path, e) < 0 ||
        param_string(params, "which", 0, &which, e) < 0 || session_profile(d, s, params, &p, e) < 0)
        return -1;
    if (path[0] != '/') {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.path: must be absolute (the daemon's working directory is not yours)");
        return -1;
    }
    int32_t w = PRGE_ADAPTER_CURRENT;
    if (which && strcmp(which, "best") == 0) w = PRGE_ADAPTER_BEST;
    else if (which && strcmp(which, "current") != 0) {
        rpc_error_set(e, RPC_INVALID_PARAMS, "params.which: must be \"current\" or \"best\"");
        return -1;
    }
    prge_status st;
    if (w == PRGE_ADAPTER_CURRENT) {
        /* The inference copy: no need to wait for a training slice to end. */
        pthread_mutex_lock(&p->adapter_mu);
        st = prge_adapter_save(p->adapter, path);
        pthread_mutex_unlock(&p->adapter_mu);
    } else {
        prge_adapter *a = NULL;
        profile_lock(p);
        st = prge_trainer_get_adapter(p->trainer, w, &a);
        profile_unlock(p);
        if (st == PRGE_OK) st = prge_adapter_save(a, path);
        prge_adapter_free(a);
    }
    if (st != PRGE_OK) {
        rpc_error_library(e, st, "saving the adapter");
        return -1;
    }
    *result = json_object_new_object();
    add_string(*result, "profile", p->name);
    add_string(*result, "path", path);
    add_string(*result, "which", w == PRGE_ADAPTER_BEST ? "best" : "current");
    return 0;
}

static int m_shutdown(struct daemon *d, struct session *s, struct json_object *params,
                      struct json_object **result, struct rpc_error *e) {
    static const char *const keys[] = {NULL};
    (void)s;
    if (params_allow(params, keys, e) < 0) return -1;
    log_info("shutdown requested by a client");
    d->shutdown_requested = 1;
    *result = json_object_new_object();
    json_object_object_add(*result, "stopping", json_object_new_boolean(1));
    return 0;
}

static const struct method methods[] = {
    {"status", m_status, 0},
    {"list_profiles", m_list_profiles, 0},
    {"select_profile", m_select_profile, 1},
    {"add_examples", m_add_examples, 1},
    {"train_start", m_train_start, 0},
    {"train_stop", m_train_stop, 1},
    {"classify", m_classify, 1},
    {"generate", m_generate, 1},
    {"save_adapter", m_save_adapter, 1},
    {"export_adapter", m_export_adapter, 1},
    {"shutdown", m_shutdown, 0},
};

const struct method *method_find(const char *name) {
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
        if (strcmp(methods[i].name, name) == 0) return &methods[i];
    return NULL;
}
