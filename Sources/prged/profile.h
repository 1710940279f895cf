/* Profiles: one adapter per user on the shared base model. Each has a directory
 * <state_dir>/profiles/<name>/ holding
 *   journal                every acknowledged example (journal.h), replayed at start
 *   checkpoint-<X>.gguf    the trainer's last checkpoint (adapter, step, best adapter, config);
 *                          X = the journal offset (16 hex digits) its training set ends at
 *   adapter.gguf           the adapter of that checkpoint, loadable by llama.cpp as it is
 * The library writes the .gguf files atomically (temp file, fsync, rename, fsync dir).
 *
 * Examples go to the journal first: add_examples is acknowledged once its record is on disk,
 * without waiting for a training run that holds the trainer (a trainer runs one call at a
 * time). Journaled records queue as "pending" and enter the trainer whenever the trainer lock
 * is released (profile_unlock), in journal order. So the trainer's training set is always
 * the journal's records up to some offset (applied_offset).
 *
 * Why X is in the checkpoint's name: the library resumes a checkpoint only into a trainer
 * holding the same training set it was written with. A restart replays the records before X,
 * resumes the checkpoint, then replays the rest. The name changes atomically with the file;
 * after a crash between writing a new checkpoint and removing the old one, the larger X is
 * the newer one (X never decreases). */
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
    uint64_t n_train, n_dev;  /* acknowledged (journaled) examples                          */
    uint64_t n_pending;       /* of those, not yet in the trainer (a training run holds it) */
    uint64_t step;            /* steps done by the trainer                                  */
    uint64_t checkpoint_step; /* step of the last checkpoint on disk                        */
    float last_loss;          /* mean of the last step's losses; NaN before                 */
    uint64_t journal_bytes, journal_records;
    int degraded;             /* the journal failed: add_examples refused until restart     */
};

struct pending; /* a journaled record waiting for the trainer */

/* Lock order: mu, then journal_mu, then adapter_mu, then stats_mu. */
struct profile {
    char name[PROFILE_NAME_MAX + 1];
    char *dir;
    pthread_mutex_t mu;         /* the trainer and what follows it; a training slice holds it */
    prge_trainer *trainer;
    uint64_t applied_offset;    /* the trainer holds the journal's records before this offset */
    int has_checkpoint;
    uint64_t checkpoint_offset; /* the X of the checkpoint file on disk */
    pthread_mutex_t journal_mu; /* the journal and the pending queue */
    struct journal journal;
    struct pending *pending, **pending_tail;
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
    /* Validates examples before they are journaled, for every profile (the trainer options
     * are the same for all). A trainer with a tiny adapter: it only parses and tokenizes. */
    pthread_mutex_t validator_mu;
    prge_trainer *validator;
    char *validator_json;
    uint64_t validator_examples; /* it keeps what it validated: replaced now and then */
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

/* Validates `jsonl` (n examples, one per line) and journals it: returns 0 only once the record
 * is on disk. The trainer gets it at the next profile_unlock (now, if the trainer is free). */
int profile_add_examples(struct profiles *ps, struct profile *p, int32_t split, const char *jsonl,
                         size_t len, uint64_t n, struct rpc_error *e);

/* The trainer lock. Both hand pending examples to the trainer, so whoever holds the lock
 * sees every example acknowledged before it took it. */
void profile_lock(struct profile *p);
void profile_unlock(struct profile *p);

/* Copies the trainer's current adapter into p->adapter. Caller holds the trainer lock. */
int profile_refresh_adapter_locked(struct profile *p, struct rpc_error *e);

/* Writes a checkpoint and adapter.gguf if the trainer moved since the last checkpoint (or
 * always, with force), then removes the previous checkpoint. Caller holds the trainer lock. */
int profile_checkpoint_locked(struct profile *p, int force, struct rpc_error *e);

void profile_stats_get(struct profile *p, struct profile_stats *out);

/* Path of a file in the profile's directory, into buf. */
void profile_path(const struct profile *p, const char *file, char *buf, size_t size);

#endif
