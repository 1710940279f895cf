/* Profiles: one adapter per user on the shared base model. Each has a directory
 * <state_dir>/profiles/<name>/ holding
 *   journal          every acknowledged example (journal.h), replayed into the trainer at start
 *   checkpoint.gguf  the trainer's last checkpoint (adapter, step, best adapter, config)
 *   adapter.gguf     the adapter of that checkpoint, loadable by llama.cpp as it is
 * The library writes both .gguf files atomically (temp file, fsync, rename, fsync dir). */
#ifndef PRGED_PROFILE_H
#define PRGED_PROFILE_H

#include "config.h"
#include "journal.h"
#include "prge.h"
#include "protocol.h"

#include <pthread.h>
#include <stdint.h>

#define PROFILE_NAME_MAX 64

/* What status reports; a snapshot is taken under stats_mu only. */
struct profile_stats {
    uint64_t n_train, n_dev;
    uint64_t step;            /* steps done by the trainer                    */
    uint64_t checkpoint_step; /* step of the last checkpoint on disk          */
    float last_loss;          /* mean of the last step's losses; NaN before   */
    uint64_t journal_bytes, journal_records;
    int degraded;             /* a journal write failed: add_examples refused until restart */
};

/* Lock order: gate (gate.h), then mu, then adapter_mu, then stats_mu. */
struct profile {
    char name[PROFILE_NAME_MAX + 1];
    char *dir;
    pthread_mutex_t mu;         /* trainer and journal; a training slice holds it */
    prge_trainer *trainer;
    struct journal journal;
    pthread_mutex_t adapter_mu; /* the adapter pointer; inference holds it while it runs */
    prge_adapter *adapter;      /* copy of the trainer's current adapter, for inference;
                                   replaced only with mu and adapter_mu both held */
    pthread_mutex_t stats_mu;   /* never held across a library call */
    struct profile_stats stats;
    struct profile *next;
};

struct profiles {
    pthread_mutex_t mu; /* the list; held while a profile is created or loaded */
    struct profile *head;
    prge_model *model;
    char *root;               /* <state_dir>/profiles */
    const char *trainer_json;
};

/* Loads every profile under <state_dir>/profiles (creating the directories as needed), then
 * makes sure `default_profile` exists. Returns 0 or -1 with err set. */
int profiles_init(struct profiles *ps, prge_model *model, const struct config *cfg, char *err,
                  size_t errlen);
void profiles_free(struct profiles *ps);

/* Finds `name`; with create != 0 makes it when missing (*created = 1). On failure returns -1
 * with e set (RPC_NO_PROFILE, RPC_INVALID_PARAMS, or a library/IO error). */
int profiles_get(struct profiles *ps, const char *name, int create, struct profile **out,
                 int *created, struct rpc_error *e);

/* Calls fn for each profile, in creation order, with the list locked. */
void profiles_foreach(struct profiles *ps, void (*fn)(struct profile *p, void *ctx), void *ctx);

/* Validates `jsonl` (n_lines examples) through the trainer, then journals it: returns 0 only
 * once the record is on disk. */
int profile_add_examples(struct profile *p, int32_t split, const char *jsonl, size_t len,
                         struct rpc_error *e);

/* Copies the trainer's current adapter into p->adapter. Caller holds p->mu. */
int profile_refresh_adapter_locked(struct profile *p, struct rpc_error *e);

/* Writes checkpoint.gguf and adapter.gguf if the trainer moved since the last checkpoint
 * (or always, with force). Caller holds p->mu. */
int profile_checkpoint_locked(struct profile *p, int force, struct rpc_error *e);

void profile_stats_get(struct profile *p, struct profile_stats *out);

/* Path of a file in the profile's directory, into buf. */
void profile_path(const struct profile *p, const char *file, char *buf, size_t size);

#endif
