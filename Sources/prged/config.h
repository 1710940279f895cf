/* The daemon's JSON configuration: parsed strictly and validated field by field against a
 * table (type, range, required), so every mistake is reported with its JSON path. */
#ifndef PRGED_CONFIG_H
#define PRGED_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CONFIG_MAX_UIDS 16

/* How much background training may cost; reloadable on SIGHUP. */
struct training_budget {
    int64_t steps_per_minute;  /* cap on the step rate, 0 = as fast as possible          */
    int64_t max_steps;         /* per train_start, 0 = no limit (the request may ask less) */
    double max_seconds;        /* per train_start, 0 = no limit (the request may ask less) */
    double refresh_every_s;    /* how often inference catches up with the trained adapter   */
    double checkpoint_every_s; /* checkpoint while training at most this often (flash wear) */
};

/* Reloadable on SIGHUP. */
struct limits {
    int64_t max_request_bytes;   /* one request line, newline excluded */
    int64_t max_clients;
    int64_t max_generate_tokens; /* the largest n_predict a generate request may ask for */
};

struct config {
    char *socket_path;  /* absolute; created with mode 0600                */
    char *state_dir;    /* absolute; profiles/<name>/{journal,adapter,checkpoint} */
    char *model_path;   /* absolute path of the GGUF model                 */
    int64_t threads;    /* forward-pass threads, 0 = all cores             */
    int32_t numeric_mode; /* PRGE_NUMERIC_*                                */
    char *trainer_json; /* the "trainer" object, re-serialized for prge_trainer_create */
    char *default_profile;
    int64_t request_threads; /* threads running slow requests (classify, generate, fsync) */
    int log_level;
    uid_t allowed_uids[CONFIG_MAX_UIDS]; /* besides the daemon's own uid */
    size_t n_allowed_uids;
    struct training_budget training;
    struct limits limits;
};

/* Reads and validates the file at `path` into *out (which it owns afterwards: config_free).
 * Returns 0, or -1 with a message naming the JSON path of the problem in err. */
int config_load(const char *path, struct config *out, char *err, size_t errlen);

void config_free(struct config *c);

/* A profile name is also a directory name: [A-Za-z0-9_.-], 1..64 bytes, not starting with '.'. */
int profile_name_valid(const char *name);

#endif
