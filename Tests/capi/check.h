/* The assertions the C ABI test programs share (test_capi.c, test_misuse.c). Each program is
 * one translation unit, so the counters are static; main() prints "N passed, M failed". */
#ifndef PRGE_TEST_CHECK_H
#define PRGE_TEST_CHECK_H
#include "prge.h"

#include <stdio.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            printf(__VA_ARGS__);                                                           \
            printf("\n");                                                                  \
        }                                                                                  \
    } while (0)

/* A call that must fail with `want` and leave a message naming the problem (`needle`). */
#define EXPECT_ERR(call, want, needle)                                                     \
    do {                                                                                   \
        prge_status s_ = (call);                                                           \
        const char *m_ = prge_last_error();                                                \
        CHECK(s_ == (want) && m_ != NULL && strstr(m_, (needle)) != NULL,                  \
              "%s -> %d (%s), want %d; message \"%s\" should contain \"%s\"", #call, s_,   \
              prge_status_string(s_), (int)(want), m_ ? m_ : "(null)", (needle));         \
    } while (0)

#define EXPECT_OK(call)                                                                    \
    do {                                                                                   \
        prge_status s_ = (call);                                                           \
        CHECK(s_ == PRGE_OK, "%s -> %d (%s): %s", #call, s_, prge_status_string(s_),      \
              prge_last_error());                                                          \
    } while (0)

/* A batch of one sequence, `n` tokens, with logits wanted at token `pos`. `s` and `o` are the
 * caller's storage (the batch points at them), as prge_forward's arrays always are. */
static inline prge_batch one_seq_batch(prge_seq *s, prge_seq_pos *o, const int32_t *tokens, size_t n,
                                       size_t pos) {
    s->tokens = tokens;
    s->n_tokens = n;
    o->seq = 0;
    o->pos = pos;
    prge_batch b;
    b.seqs = s;
    b.n_seqs = 1;
    b.outputs = o;
    b.n_outputs = 1;
    return b;
}

#endif
