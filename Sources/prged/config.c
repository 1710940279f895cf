#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include "jsonparse.h"
#include "log.h"
#include "prge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* A config file is a few hundred bytes; this only stops a wrong path (a model, /dev/zero)
 * from being read into memory. */
#define CONFIG_MAX_BYTES (1 << 20)

enum field_type {
    F_PATH,        /* absolute path string -> char*          */
    F_NAME,        /* profile name -> char*                  */
    F_INT,         /* integer in [min, max] -> int64_t       */
    F_NUMBER,      /* number in [min, max] -> double         */
    F_LOG_LEVEL,   /* "error".."debug" -> int                */
    F_NUMERIC,     /* "fp32" | "bf16" -> int32_t             */
    F_UIDS,        /* array of uids -> allowed_uids          */
    F_JSON_OBJECT, /* any object, kept as JSON text -> char* */
    F_SECTION      /* object validated by `sub`              */
};

struct field {
    const char *name;
    enum field_type type;
    bool required;
    size_t offset; /* into the struct the table describes */
    double min, max;
    const struct field *sub;
};

#define END {NULL, 0, false, 0, 0, 0, NULL}

static const struct field training_fields[] = {
    {"steps_per_minute", F_INT, false, offsetof(struct training_budget, steps_per_minute), 0, 1e6, NULL},
    {"max_steps", F_INT, false, offsetof(struct training_budget, max_steps), 0, 1e12, NULL},
    {"max_seconds", F_NUMBER, false, offsetof(struct training_budget, max_seconds), 0, 1e9, NULL},
    {"refresh_every_s", F_NUMBER, false, offsetof(struct training_budget, refresh_every_s), 0.1, 1e6, NULL},
    {"checkpoint_every_s", F_NUMBER, false, offsetof(struct training_budget, checkpoint_every_s), 0.1, 1e6, NULL},
    END,
};

static const struct field limits_fields[] = {
    {"max_request_bytes", F_INT, false, offsetof(struct limits, max_request_bytes), 64, 1 << 28, NULL},
    {"max_clients", F_INT, false, offsetof(struct limits, max_clients), 1, 10000, NULL},
    {"max_generate_tokens", F_INT, false, offsetof(struct limits, max_generate_tokens), 1, 1 << 20, NULL},
    END,
};

static const struct field top_fields[] = {
    {"socket", F_PATH, true, offsetof(struct config, socket_path), 0, 0, NULL},
    {"state_dir", F_PATH, true, offsetof(struct config, state_dir), 0, 0, NULL},
    {"model", F_PATH, true, offsetof(struct config, model_path), 0, 0, NULL},
    {"threads", F_INT, false, offsetof(struct config, threads), 0, 1024, NULL},
    {"numeric_mode", F_NUMERIC, false, offsetof(struct config, numeric_mode), 0, 0, NULL},
    {"trainer", F_JSON_OBJECT, false, offsetof(struct config, trainer_json), 0, 0, NULL},
    {"default_profile", F_NAME, false, offsetof(struct config, default_profile), 0, 0, NULL},
    {"request_threads", F_INT, false, offsetof(struct config, request_threads), 1, 64, NULL},
    {"log_level", F_LOG_LEVEL, false, offsetof(struct config, log_level), 0, 0, NULL},
    {"allowed_uids", F_UIDS, false, 0, 0, 0, NULL},
    {"training", F_SECTION, false, offsetof(struct config, training), 0, 0, training_fields},
    {"limits", F_SECTION, false, offsetof(struct config, limits), 0, 0, limits_fields},
    END,
};

/* Keys of the trainer options that the daemon owns: it names the files itself. */
static const char *const daemon_owned_trainer_keys[] = {"checkpoint", "log", "step_log"};

int profile_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static void set_defaults(struct config *c) {
    memset(c, 0, sizeof *c);
    c->threads = 0;
    c->numeric_mode = PRGE_NUMERIC_FP32;
    c->request_threads = 2;
    c->log_level = LOG_LEVEL_INFO;
    c->training = (struct training_budget){
        .steps_per_minute = 0, .max_steps = 0, .max_seconds = 0, .refresh_every_s = 30,
        .checkpoint_every_s = 300};
    c->limits = (struct limits){
        .max_request_bytes = 1 << 20, .max_clients = 64, .max_generate_tokens = 512};
}

static const char *type_name(enum field_type t) {
    switch (t) {
    case F_PATH: return "an absolute path (string)";
    case F_NAME: return "a profile name (string of [A-Za-z0-9_.-], 1..64 bytes)";
    case F_INT: return "an integer";
    case F_NUMBER: return "a number";
    case F_LOG_LEVEL: return "one of \"error\", \"warn\", \"info\", \"debug\"";
    case F_NUMERIC: return "one of \"fp32\", \"bf16\"";
    case F_UIDS: return "an array of user ids (integers)";
    case F_JSON_OBJECT:
    case F_SECTION: return "an object";
    }
    return "?";
}

static int wrong_type(const char *path, enum field_type t, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: must be %s", path, type_name(t));
    return -1;
}

static int check_trainer(struct json_object *obj, const char *path, char *err, size_t errlen) {
    for (size_t i = 0; i < sizeof daemon_owned_trainer_keys / sizeof *daemon_owned_trainer_keys; i++)
        if (json_object_object_get_ex(obj, daemon_owned_trainer_keys[i], NULL)) {
            snprintf(err, errlen, "%s.%s: not allowed here, the daemon names its checkpoint and log files",
                     path, daemon_owned_trainer_keys[i]);
            return -1;
        }
    return 0;
}

static int parse_fields(struct json_object *obj, const struct field *table, void *base,
                        struct config *c, const char *path, char *err, size_t errlen);

static int parse_field(struct json_object *v, const struct field *f, void *base, struct config *c,
                       const char *path, char *err, size_t errlen) {
    char *dst = (char *)base + f->offset;
    enum json_type jt = json_object_get_type(v);
    switch (f->type) {
    case F_PATH:
    case F_NAME: {
        if (jt != json_type_string) return wrong_type(path, f->type, err, errlen);
        const char *s = json_object_get_string(v);
        if (strlen(s) != (size_t)json_object_get_string_len(v))
            return snprintf(err, errlen, "%s: contains a NUL byte", path), -1;
        if (f->type == F_PATH && s[0] != '/') return wrong_type(path, f->type, err, errlen);
        if (f->type == F_NAME && !profile_name_valid(s)) return wrong_type(path, f->type, err, errlen);
        char *copy = strdup(s);
        if (!copy) return snprintf(err, errlen, "out of memory"), -1;
        free(*(char **)dst);
        *(char **)dst = copy;
        return 0;
    }
    case F_INT: {
        if (jt != json_type_int) return wrong_type(path, f->type, err, errlen);
        errno = 0;
        int64_t x = json_object_get_int64(v);
        if (errno != 0 || (double)x < f->min || (double)x > f->max)
            return snprintf(err, errlen, "%s: %s is out of range [%.0f, %.0f]", path,
                            json_object_to_json_string(v), f->min, f->max), -1;
        *(int64_t *)dst = x;
        return 0;
    }
    case F_NUMBER: {
        if (jt != json_type_int && jt != json_type_double) return wrong_type(path, f->type, err, errlen);
        double x = json_object_get_double(v);
        if (!(x >= f->min && x <= f->max))
            return snprintf(err, errlen, "%s: %s is out of range [%g, %g]", path,
                            json_object_to_json_string(v), f->min, f->max), -1;
        *(double *)dst = x;
        return 0;
    }
    case F_LOG_LEVEL: {
        int level = jt == json_type_string ? log_level_parse(json_object_get_string(v)) : -1;
        if (level < 0) return wrong_type(path, f->type, err, errlen);
        *(int *)dst = level;
        return 0;
    }
    case F_NUMERIC: {
        const char *s = jt == json_type_string ? json_object_get_string(v) : "";
        if (strcmp(s, "fp32") == 0) *(int32_t *)dst = PRGE_NUMERIC_FP32;
        else if (strcmp(s, "bf16") == 0) *(int32_t *)dst = PRGE_NUMERIC_BF16;
        else if (strcmp(s, "int8") == 0) *(int32_t *)dst = PRGE_NUMERIC_INT8;
        else return wrong_type(path, f->type, err, errlen);
        return 0;
    }
    case F_UIDS: {
        if (jt != json_type_array) return wrong_type(path, f->type, err, errlen);
        size_t n = json_object_array_length(v);
        if (n > CONFIG_MAX_UIDS)
            return snprintf(err, errlen, "%s: at most %d user ids", path, CONFIG_MAX_UIDS), -1;
        for (size_t i = 0; i < n; i++) {
            struct json_object *u = json_object_array_get_idx(v, i);
            int64_t x = json_object_is_type(u, json_type_int) ? json_object_get_int64(u) : -1;
            if (x < 0 || x > 0x7fffffff)
                return snprintf(err, errlen, "%s[%zu]: must be a user id (integer >= 0)", path, i), -1;
            c->allowed_uids[i] = (uid_t)x;
        }
        c->n_allowed_uids = n;
        return 0;
    }
    case F_JSON_OBJECT: {
        if (jt != json_type_object) return wrong_type(path, f->type, err, errlen);
        if (check_trainer(v, path, err, errlen) < 0) return -1;
        char *copy = strdup(json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
        if (!copy) return snprintf(err, errlen, "out of memory"), -1;
        free(*(char **)dst);
        *(char **)dst = copy;
        return 0;
    }
    case F_SECTION:
        if (jt != json_type_object) return wrong_type(path, f->type, err, errlen);
        return parse_fields(v, f->sub, dst, c, path, err, errlen);
    }
    return -1;
}

static int parse_fields(struct json_object *obj, const struct field *table, void *base,
                        struct config *c, const char *path, char *err, size_t errlen) {
    char sub[256];
    /* Unknown keys first: a typo must not pass silently as "field left at its default". */
    json_object_object_foreach(obj, key, val) {
        (void)val;
        const struct field *f = table;
        while (f->name && strcmp(f->name, key) != 0) f++;
        if (!f->name) {
            snprintf(err, errlen, "%s%s%s: unknown key", path, *path ? "." : "", key);
            return -1;
        }
    }
    for (const struct field *f = table; f->name; f++) {
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", f->name);
        struct json_object *v;
        if (!json_object_object_get_ex(obj, f->name, &v)) {
            if (f->required) return snprintf(err, errlen, "%s: required", sub), -1;
            continue;
        }
        if (parse_field(v, f, base, c, sub, err, errlen) < 0) return -1;
    }
    return 0;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(CONFIG_MAX_BYTES + 1);
    size_t n = 0;
    while (buf && n <= CONFIG_MAX_BYTES) {
        ssize_t r = read(fd, buf + n, CONFIG_MAX_BYTES + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            free(buf);
            buf = NULL;
            break;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (!buf) return NULL;
    if (n > CONFIG_MAX_BYTES) {
        snprintf(err, errlen, "%s: larger than %d bytes, not a config file", path, CONFIG_MAX_BYTES);
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int config_load(const char *path, struct config *out, char *err, size_t errlen) {
    set_defaults(out);
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    if (!text) return -1;
    char perr[256];
    struct json_object *root = json_parse_strict(text, len, perr, sizeof perr);
    free(text);
    if (!root) {
        snprintf(err, errlen, "%s: %s", path, perr);
        return -1;
    }
    int rc = -1;
    if (!json_object_is_type(root, json_type_object)) {
        snprintf(err, errlen, "(root): must be an object");
    } else if (parse_fields(root, top_fields, out, out, "", err, errlen) == 0) {
        rc = 0;
        if (strlen(out->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(err, errlen, "socket: longer than %zu bytes (the limit of a Unix socket path)",
                     sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            rc = -1;
        }
    }
    json_object_put(root);
    if (rc == 0) {
        if (!out->default_profile) out->default_profile = strdup("default");
        if (!out->trainer_json) out->trainer_json = strdup("{}");
        if (!out->default_profile || !out->trainer_json) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    if (rc < 0) config_free(out);
    return rc;
}

void config_free(struct config *c) {
    free(c->socket_path);
    free(c->state_dir);
    free(c->model_path);
    free(c->trainer_json);
    free(c->default_profile);
    memset(c, 0, sizeof *c);
}
