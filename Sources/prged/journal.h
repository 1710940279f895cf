/* The append-only example journal of one profile: the durable source of truth for its
 * training and dev sets. The trainer's in-memory sets are rebuilt from it on every start.
 *
 * File layout (little-endian):
 *   header  "PRGEJRN1"                                   8 bytes
 *   record  u32 length | u32 crc32(payload) | payload    8 + length bytes, repeated
 *   payload u8 split (PRGE_SPLIT_TRAIN | PRGE_SPLIT_DEV) | JSONL text (one example per line)
 * crc32 is zlib's (IEEE 802.3, reflected, init and xorout 0xffffffff), so any tool can check it.
 *
 * A record is acknowledged only after write + fdatasync, so a crash can leave at most one torn
 * record, at the end: opening the journal drops everything from the first record that is
 * incomplete or fails its CRC (truncating the file), and logs how many bytes it dropped. */
#ifndef PRGED_JOURNAL_H
#define PRGED_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

struct journal {
    int fd;
    uint64_t size; /* bytes of valid records (and header): where the next record goes */
    uint64_t n_records;
};

/* Called for each valid record while opening, with the record's byte offset in the file; a
 * non-zero return stops the open with -1. */
typedef int (*journal_replay_fn)(uint64_t offset, int32_t split, const char *jsonl, size_t len,
                                 void *ctx);

/* Opens (creating if needed, then fsyncing the directory) `path`, replays every valid record
 * through `fn` and truncates a torn tail. `max_record` bounds a record's length: a larger
 * length field is treated as corruption, never allocated. Returns 0 or -1 with err set. */
int journal_open(struct journal *j, const char *path, uint64_t max_record, journal_replay_fn fn,
                 void *ctx, char *err, size_t errlen);

/* Appends one record and makes it durable (fdatasync). On failure the file is cut back to its
 * previous size, so a failed append leaves no half record behind; returns -1 with err set. */
int journal_append(struct journal *j, int32_t split, const char *jsonl, size_t len, char *err,
                   size_t errlen);

void journal_close(struct journal *j);

#endif
