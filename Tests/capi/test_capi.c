/*
 * The C ABI test: every function of prge.h, used right and used wrong (NULL and freed handles,
 * made-up handles, wrong sizes, bad paths, malformed files, non-UTF-8 text, tiny and misaligned
 * buffers, several threads). Every misuse must come back as an error status with a message,
 * never a crash. Built from this one file as strict C11 and as C++17 (see the Makefile).
 *
 * usage: test_capi MODEL.gguf     (the reference model, SmolLM2-135M-Instruct Q4_1)
 */
#if !defined(__cplusplus) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, pthreads under -std=c11 */
#endif
#include "prge.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The layouts libprge's Swift side hard-codes (Swift cannot read this header). */
static_assert(sizeof(prge_model_params) == 8, "prge_model_params layout");
static_assert(offsetof(prge_model_params, n_threads) == 0, "prge_model_params layout");
static_assert(offsetof(prge_model_params, numeric_mode) == 4, "prge_model_params layout");
/* prge_batch, prge_seq, prge_seq_pos: every field one machine word, read as such. */
static_assert(sizeof(size_t) == sizeof(void *), "word-sized fields");
static_assert(sizeof(prge_seq) == 2 * sizeof(size_t), "prge_seq layout");
static_assert(offsetof(prge_seq, n_tokens) == sizeof(size_t), "prge_seq layout");
static_assert(sizeof(prge_seq_pos) == 2 * sizeof(size_t), "prge_seq_pos layout");
static_assert(offsetof(prge_seq_pos, pos) == sizeof(size_t), "prge_seq_pos layout");
static_assert(sizeof(prge_batch) == 4 * sizeof(size_t), "prge_batch layout");
static_assert(offsetof(prge_batch, n_seqs) == 1 * sizeof(size_t), "prge_batch layout");
static_assert(offsetof(prge_batch, outputs) == 2 * sizeof(size_t), "prge_batch layout");
static_assert(offsetof(prge_batch, n_outputs) == 3 * sizeof(size_t), "prge_batch layout");
/* prge_progress as the trainer writes it. */
static_assert(offsetof(prge_progress, total_steps) == 8, "prge_progress layout");
static_assert(offsetof(prge_progress, elapsed_s) == 16, "prge_progress layout");
static_assert(offsetof(prge_progress, eta_s) == 24, "prge_progress layout");
static_assert(offsetof(prge_progress, train_loss) == 32, "prge_progress layout");
static_assert(offsetof(prge_progress, evaluated) == 36, "prge_progress layout");
static_assert(offsetof(prge_progress, dev_loss) == 40, "prge_progress layout");
static_assert(offsetof(prge_progress, dev_accuracy) == 44, "prge_progress layout");
static_assert(offsetof(prge_progress, best_dev_accuracy) == 48, "prge_progress layout");
static_assert(sizeof(prge_progress) == 56, "prge_progress layout");

#include "check.h" /* CHECK, EXPECT_OK, EXPECT_ERR and the pass/fail counts */

static const char *model_path;

static void test_version_and_status(void) {
    CHECK(prge_abi_version() == PRGE_ABI_VERSION, "library ABI %d, header %d", prge_abi_version(),
          PRGE_ABI_VERSION);
    /* The header's numbers against the library's names: a renumbering on either side shows. */
    static const struct { prge_status s; const char *name; } names[] = {
        {PRGE_OK, "ok"},
        {PRGE_ERR_INVALID_ARGUMENT, "invalid argument"},
        {PRGE_ERR_IO, "i/o error"},
        {PRGE_ERR_FORMAT, "malformed file"},
        {PRGE_ERR_UNSUPPORTED, "unsupported"},
        {PRGE_ERR_OUT_OF_MEMORY, "out of memory"},
        {PRGE_ERR_BUFFER_TOO_SMALL, "buffer too small"},
        {PRGE_ERR_STATE, "invalid state"},
        {PRGE_ERR_CANCELLED, "cancelled"},
        {PRGE_ERR_INTERNAL, "internal error"},
        {10, "unknown status"},
        {-1, "unknown status"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *got = prge_status_string(names[i].s);
        CHECK(got && strcmp(got, names[i].name) == 0, "status %d is \"%s\", want \"%s\"",
              names[i].s, got ? got : "(null)", names[i].name);
    }
}

static void *fresh_thread_last_error(void *arg) {
    (void)arg;
    const char *m = prge_last_error();
    return (void *)(uintptr_t)(m != NULL && m[0] == '\0');
}

static void test_last_error(void) {
    pthread_t t;
    void *r = NULL;
    CHECK(pthread_create(&t, NULL, fresh_thread_last_error, NULL) == 0, "pthread_create");
    pthread_join(t, &r);
    CHECK(r != NULL, "a thread that never failed must see \"\" (not NULL)");
}

static void test_params(void) {
    prge_model_params p;
    memset(&p, 0x5a, sizeof p);
    EXPECT_OK(prge_model_default_params(&p));
    CHECK(p.n_threads == 0 && p.numeric_mode == PRGE_NUMERIC_FP32, "defaults %d %d", p.n_threads,
          p.numeric_mode);
    EXPECT_ERR(prge_model_default_params(NULL), PRGE_ERR_INVALID_ARGUMENT, "NULL");
    int32_t raw[4];
    EXPECT_ERR(prge_model_default_params((prge_model_params *)((char *)raw + 1)),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
}

/* Writes the first `n` bytes of the model into a temporary file (a truncated GGUF). */
static int truncated_copy(char *path, size_t n) {
    FILE *in = fopen(model_path, "rb");
    int fd = mkstemp(path);
    if (!in || fd < 0) return -1;
    char *buf = (char *)malloc(n);
    size_t got = fread(buf, 1, n, in);
    ssize_t put = write(fd, buf, got);
    free(buf);
    fclose(in);
    close(fd);
    return put == (ssize_t)n ? 0 : -1;
}

static void test_load_errors(void) {
    prge_model *m = (prge_model *)(uintptr_t)1;
    EXPECT_ERR(prge_model_load(NULL, NULL, &m), PRGE_ERR_INVALID_ARGUMENT, "path");
    CHECK(m == NULL, "*out must be NULL after a failed load");
    EXPECT_ERR(prge_model_load(model_path, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(prge_model_load("/nonexistent/model.gguf", NULL, &m), PRGE_ERR_IO,
               "/nonexistent/model.gguf");
    EXPECT_ERR(prge_model_load("/tmp", NULL, &m), PRGE_ERR_IO, "not a regular file");
    EXPECT_ERR(prge_model_load("/tmp/\xff\xfe.gguf", NULL, &m), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(prge_model_load("/proc/self/exe", NULL, &m), PRGE_ERR_FORMAT, "magic");

    char tmp[] = "/tmp/prge-capi-XXXXXX";
    CHECK(truncated_copy(tmp, 100000) == 0, "cannot write %s", tmp);
    EXPECT_ERR(prge_model_load(tmp, NULL, &m), PRGE_ERR_FORMAT, "truncated");
    CHECK(m == NULL, "*out must be NULL after a failed load");
    unlink(tmp);

    prge_model_params p;
    prge_model_default_params(&p);
    p.n_threads = -1;
    EXPECT_ERR(prge_model_load(model_path, &p, &m), PRGE_ERR_INVALID_ARGUMENT, "n_threads");
    p.n_threads = 1;
    p.numeric_mode = 7;
    EXPECT_ERR(prge_model_load(model_path, &p, &m), PRGE_ERR_INVALID_ARGUMENT, "numeric_mode");
    CHECK(m == NULL, "*out must be NULL after a failed load");
}

static void test_metadata(prge_model *m) {
    size_t v = 0;
    EXPECT_OK(prge_model_n_vocab(m, &v));
    CHECK(v == 49152, "n_vocab %zu", v);
    EXPECT_OK(prge_model_n_ctx_train(m, &v));
    CHECK(v == 8192, "n_ctx_train %zu", v);
    EXPECT_OK(prge_model_n_layer(m, &v));
    CHECK(v == 30, "n_layer %zu", v);
    EXPECT_OK(prge_model_n_embd(m, &v));
    CHECK(v == 576, "n_embd %zu", v);
    EXPECT_ERR(prge_model_n_vocab(m, NULL), PRGE_ERR_INVALID_ARGUMENT, "NULL");
    size_t raw[2];
    EXPECT_ERR(prge_model_n_layer(m, (size_t *)((char *)raw + 4)), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");

    char buf[64];
    size_t len = 0;
    EXPECT_OK(prge_model_architecture(m, buf, sizeof buf, &len));
    CHECK(strcmp(buf, "llama") == 0 && len == 5, "architecture \"%s\" (%zu)", buf, len);
    EXPECT_OK(prge_model_architecture(m, buf, sizeof buf, NULL));
    len = 0;
    EXPECT_ERR(prge_model_architecture(m, NULL, 0, &len), PRGE_ERR_BUFFER_TOO_SMALL, "needs 6");
    CHECK(len == 5, "length query gave %zu", len);
    memcpy(buf, "XXXXXXXX", 9);
    EXPECT_ERR(prge_model_architecture(m, buf, 5, &len), PRGE_ERR_BUFFER_TOO_SMALL, "5 bytes");
    CHECK(strcmp(buf, "XXXXXXXX") == 0, "a too-small buffer must stay untouched: \"%s\"", buf);
    EXPECT_ERR(prge_model_architecture(m, NULL, 16, &len), PRGE_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT_ERR(prge_model_architecture(m, buf, SIZE_MAX, &len), PRGE_ERR_INVALID_ARGUMENT,
               "too large");

    static const struct { const char *key, *want; } meta[] = {
        {"general.architecture", "llama"},
        {"llama.block_count", "30"},                 /* uint32  */
        {"llama.rope.freq_base", "100000.0"},        /* float32 */
        {"llama.attention.layer_norm_rms_epsilon", "1e-05"},
        {"tokenizer.ggml.add_bos_token", "false"},   /* bool    */
        {"general.name", "Smollm2 135M 8k Lc100K Mix1 Ep2"},
    };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++) {
        prge_status s = prge_model_meta_str(m, meta[i].key, buf, sizeof buf, &len);
        CHECK(s == PRGE_OK && strcmp(buf, meta[i].want) == 0 && len == strlen(meta[i].want),
              "%s = \"%s\" (status %d: %s), want \"%s\"", meta[i].key, s ? "" : buf, s,
              prge_last_error(), meta[i].want);
    }
    EXPECT_ERR(prge_model_meta_str(m, "no.such.key", buf, sizeof buf, &len),
               PRGE_ERR_INVALID_ARGUMENT, "no.such.key");
    EXPECT_ERR(prge_model_meta_str(m, "tokenizer.ggml.tokens", buf, sizeof buf, &len),
               PRGE_ERR_INVALID_ARGUMENT, "array of 49152");
    EXPECT_ERR(prge_model_meta_str(m, NULL, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT,
               "key");
    EXPECT_ERR(prge_model_meta_str(m, "general.\xc3", buf, sizeof buf, &len),
               PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
}

static void test_tokens(prge_model *m) {
    /* Reference ids from llama.cpp (shared/reference/smollm2-135m-q4_1.json). */
    static const char text[] = "The capital of France is";
    static const int32_t want[] = {504, 3575, 282, 4649, 314};
    int32_t ids[16];
    size_t n = 0;
    EXPECT_OK(prge_tokenize(m, text, strlen(text), 1, 0, ids, 16, &n));
    CHECK(n == 5 && memcmp(ids, want, sizeof want) == 0, "got %zu ids, first %d", n, ids[0]);

    n = 0;
    EXPECT_ERR(prge_tokenize(m, text, strlen(text), 1, 0, NULL, 0, &n), PRGE_ERR_BUFFER_TOO_SMALL,
               "has 5");
    CHECK(n == 5, "count query gave %zu", n);
    ids[0] = -7;
    EXPECT_ERR(prge_tokenize(m, text, strlen(text), 1, 0, ids, 2, &n), PRGE_ERR_BUFFER_TOO_SMALL,
               "holds 2");
    CHECK(ids[0] == -7, "a too-small buffer must stay untouched");
    EXPECT_OK(prge_tokenize(m, NULL, 0, 1, 0, ids, 16, &n));
    CHECK(n == 0, "empty text gave %zu ids", n);
    EXPECT_ERR(prge_tokenize(m, NULL, 5, 1, 0, ids, 16, &n), PRGE_ERR_INVALID_ARGUMENT, "text");
    EXPECT_ERR(prge_tokenize(m, "ab\xff\xfe", 4, 1, 0, ids, 16, &n), PRGE_ERR_INVALID_ARGUMENT,
               "UTF-8");
    EXPECT_ERR(prge_tokenize(m, text, SIZE_MAX, 1, 0, ids, 16, &n), PRGE_ERR_INVALID_ARGUMENT,
               "too large");
    EXPECT_ERR(prge_tokenize(m, text, strlen(text), 1, 0, ids, 16, NULL),
               PRGE_ERR_INVALID_ARGUMENT, "n_out");
    EXPECT_ERR(prge_tokenize(m, text, strlen(text), 1, 0, (int32_t *)((char *)ids + 2), 8, &n),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_tokenize(m, text, strlen(text), 1, 0, NULL, 16, &n), PRGE_ERR_INVALID_ARGUMENT,
               "NULL");

    /* Special-token text is plain text unless parse_special says otherwise. */
    static const char special[] = "<|im_start|>";
    EXPECT_OK(prge_tokenize(m, special, strlen(special), 0, 1, ids, 16, &n));
    CHECK(n == 1 && ids[0] == 1, "parsed special: %zu ids, first %d", n, ids[0]);
    EXPECT_OK(prge_tokenize(m, special, strlen(special), 0, 0, ids, 16, &n));
    CHECK(n > 1, "unparsed special gave %zu ids", n);

    static const int32_t hello[] = {19556, 905};
    char buf[64];
    size_t len = 0;
    EXPECT_OK(prge_detokenize(m, hello, 2, buf, sizeof buf, &len));
    CHECK(strcmp(buf, "Hello world") == 0 && len == 11, "detokenized \"%s\" (%zu)", buf, len);
    EXPECT_OK(prge_detokenize(m, NULL, 0, buf, sizeof buf, &len));
    CHECK(buf[0] == '\0' && len == 0, "empty detokenize \"%s\"", buf);
    EXPECT_ERR(prge_detokenize(m, hello, 2, buf, 4, &len), PRGE_ERR_BUFFER_TOO_SMALL, "needs 12");
    CHECK(len == 11, "length query gave %zu", len);
    static const int32_t bad[] = {19556, 49152};
    EXPECT_ERR(prge_detokenize(m, bad, 2, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT,
               "tokens[1] = 49152");
    static const int32_t negative[] = {-1};
    EXPECT_ERR(prge_detokenize(m, negative, 1, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT,
               "tokens[0] = -1");
    EXPECT_ERR(prge_detokenize(m, NULL, 3, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT,
               "tokens");
}

/* Every model function on a handle that is not a live prge_model. */
static void test_bad_handle(prge_model *h, const char *needle) {
    size_t v;
    char buf[16];
    int32_t ids[4];
    static const int32_t one[] = {1};
    EXPECT_ERR(prge_model_n_vocab(h, &v), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_model_n_ctx_train(h, &v), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_model_n_layer(h, &v), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_model_n_embd(h, &v), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_model_architecture(h, buf, sizeof buf, &v), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_model_meta_str(h, "general.name", buf, sizeof buf, &v),
               PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_tokenize(h, "a", 1, 0, 0, ids, 4, &v), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_detokenize(h, one, 1, buf, sizeof buf, &v), PRGE_ERR_INVALID_ARGUMENT, needle);

    prge_seq s;
    prge_seq_pos o;
    const prge_batch b = one_seq_batch(&s, &o, one, 1, 0);
    float logit;
    EXPECT_ERR(prge_forward(h, NULL, &b, &logit, 1), PRGE_ERR_INVALID_ARGUMENT, needle);
    static const char *const labels[] = {" great"};
    float score;
    EXPECT_ERR(prge_classify(h, NULL, "a", labels, 1, &score, NULL), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_generate(h, NULL, "a", 1, buf, sizeof buf, &v), PRGE_ERR_INVALID_ARGUMENT, needle);
    prge_adapter *a = NULL;
    EXPECT_ERR(prge_adapter_create(h, NULL, &a), PRGE_ERR_INVALID_ARGUMENT, needle);
    EXPECT_ERR(prge_adapter_load(h, "/tmp/none.gguf", &a), PRGE_ERR_INVALID_ARGUMENT, needle);
    prge_trainer *t = NULL;
    EXPECT_ERR(prge_trainer_create(h, NULL, NULL, &t), PRGE_ERR_INVALID_ARGUMENT, needle);
}

/* Threads share one model; each one's errors stay its own. */
struct worker { prge_model *m; int id; int ok; };

static void *worker_run(void *arg) {
    struct worker *w = (struct worker *)arg;
    char key[32];
    snprintf(key, sizeof key, "missing.key.%d", w->id);
    w->ok = 1;
    for (int i = 0; i < 200; i++) {
        int32_t ids[16];
        size_t n = 0;
        if (prge_tokenize(w->m, "Hello world", 11, 0, 0, ids, 16, &n) != PRGE_OK || n != 2 ||
            ids[0] != 19556)
            w->ok = 0;
        char buf[8];
        if (prge_model_meta_str(w->m, key, buf, sizeof buf, NULL) != PRGE_ERR_INVALID_ARGUMENT ||
            strstr(prge_last_error(), key) == NULL)
            w->ok = 0;
    }
    return NULL;
}

static void test_threads(prge_model *m) {
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i].m = m;
        w[i].id = i;
        w[i].ok = 0;
        CHECK(pthread_create(&t[i], NULL, worker_run, &w[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].ok, "worker %d saw a wrong result or another thread's error", i);
    }
}

/* ---- Forward, adapters, classification, generation ------------------------------------ */

#define N_VOCAB 49152

/* llama.cpp on the dequantized-f32 weights (shared/reference, logits_dequantized_f32). */
static const int32_t france[] = {504, 3575, 282, 4649, 314};         /* The capital of France is */
static const int32_t once[] = {6403, 1980, 253, 655, 28, 665, 436, 253}; /* Once upon a time, there was a */
static const struct { int32_t id; float logit; } france_top10[] = {
    {7042, 17.371262f}, {260, 14.888594f}, {4528, 13.244979f}, {2250, 13.009474f},
    {1315, 12.951521f}, {5145, 12.904945f}, {216, 12.713305f},  {441, 12.697849f},
    {3692, 12.583708f}, {3575, 12.122289f}};
/* logsoftmax + logsumexp (17.629344) of label-like tokens at the last position */
static const struct { int32_t id; float logsoftmax; } france_lsm[] = {
    {1109, -13.938027f}, {13321, -14.647035f}, {1123, -15.917867f}, {3309, -14.202481f},
    {253, -5.52793f},    {2, -25.57379f}};
static const float france_lse = 17.629344f;
/* top-1 at every position of the prompt */
static const struct { int32_t id; float logit; } france_pos[] = {
    {29, 27.353373f}, {282, 22.056046f}, {260, 12.942572f}, {314, 23.772081f}, {7042, 17.371262f}};
static const struct { int32_t id; float logit; } once_top5[] = {
    {1165, 13.147539f}, {3102, 12.982778f}, {4166, 12.73192f}, {1805, 12.673778f}, {655, 12.495575f}};

#define REF_TOL 2e-3f

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
        if (!(d <= m)) m = d; /* NaN sticks */
    }
    return m;
}

static int32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Logits of "The capital of France is" at its last position (one forward). */
static int last_logits(prge_model *m, const prge_adapter *a, float *out) {
    prge_seq s;
    prge_seq_pos o;
    const prge_batch b = one_seq_batch(&s, &o, france, 5, 4);
    return prge_forward(m, a, &b, out, N_VOCAB) == PRGE_OK;
}

static float *base_logits; /* [N_VOCAB]: base model, "The capital of France is", last position */

static void test_forward(prge_model *m) {
    /* Two ragged sequences in one forward: every position of the first, the last of the second. */
    prge_seq seqs[2];
    seqs[0].tokens = france;
    seqs[0].n_tokens = 5;
    seqs[1].tokens = once;
    seqs[1].n_tokens = 8;
    prge_seq_pos outs[6];
    for (size_t i = 0; i < 5; i++) {
        outs[i].seq = 0;
        outs[i].pos = i;
    }
    outs[5].seq = 1;
    outs[5].pos = 7;
    prge_batch b;
    b.seqs = seqs;
    b.n_seqs = 2;
    b.outputs = outs;
    b.n_outputs = 6;
    float *logits = (float *)malloc(sizeof(float) * 6 * N_VOCAB + 64);
    EXPECT_OK(prge_forward(m, NULL, &b, logits, 6 * N_VOCAB));

    const float *last = logits + 4 * N_VOCAB;
    CHECK(argmax(last, N_VOCAB) == 7042, "top-1 of \"The capital of France is\" is %d, want 7042 ( Paris)",
          argmax(last, N_VOCAB));
    float worst = 0;
    for (size_t i = 0; i < sizeof france_top10 / sizeof france_top10[0]; i++) {
        float d = fabsf(last[france_top10[i].id] - france_top10[i].logit);
        if (!(d <= worst)) worst = d;
    }
    for (size_t i = 0; i < sizeof france_lsm / sizeof france_lsm[0]; i++) {
        float d = fabsf(last[france_lsm[i].id] - (france_lsm[i].logsoftmax + france_lse));
        if (!(d <= worst)) worst = d;
    }
    for (size_t p = 0; p < 5; p++) {
        const float *row = logits + p * N_VOCAB;
        CHECK(argmax(row, N_VOCAB) == france_pos[p].id, "position %zu: top-1 %d, want %d", p,
              argmax(row, N_VOCAB), france_pos[p].id);
        float d = fabsf(row[france_pos[p].id] - france_pos[p].logit);
        if (!(d <= worst)) worst = d;
    }
    const float *o = logits + 5 * N_VOCAB;
    CHECK(argmax(o, N_VOCAB) == 1165, "second sequence: top-1 %d, want 1165", argmax(o, N_VOCAB));
    for (size_t i = 0; i < 5; i++) {
        float d = fabsf(o[once_top5[i].id] - once_top5[i].logit);
        if (!(d <= worst)) worst = d;
    }
    CHECK(worst <= REF_TOL, "max |logit - llama.cpp f32| = %g > %g", worst, REF_TOL);
    printf("forward: max |dlogit| vs llama.cpp (dequantized f32) over 26 checks = %.2e\n", worst);

    base_logits = (float *)malloc(sizeof(float) * N_VOCAB);
    memcpy(base_logits, last, sizeof(float) * N_VOCAB);

    /* ---- misuse; every case leaves the caller's buffer untouched */
    for (size_t i = 0; i < 6 * N_VOCAB; i++) logits[i] = -1234.0f;
    EXPECT_ERR(prge_forward(m, NULL, &b, logits, 6 * N_VOCAB - 1), PRGE_ERR_BUFFER_TOO_SMALL,
               "6 outputs");
    CHECK(logits[0] == -1234.0f && logits[6 * N_VOCAB - 2] == -1234.0f,
          "a too-small logits buffer must stay untouched");
    EXPECT_ERR(prge_forward(m, NULL, &b, NULL, 0), PRGE_ERR_BUFFER_TOO_SMALL, "room for 0");
    EXPECT_ERR(prge_forward(m, NULL, &b, NULL, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT_ERR(prge_forward(m, NULL, &b, (float *)((char *)logits + 2), 6 * N_VOCAB),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_forward(m, NULL, &b, logits, SIZE_MAX), PRGE_ERR_INVALID_ARGUMENT, "too large");
    EXPECT_ERR(prge_forward(m, NULL, NULL, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "batch");
    EXPECT_ERR(prge_forward(NULL, NULL, &b, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "NULL");

    prge_batch bad = b;
    bad.n_seqs = 0;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "n_seqs is 0");
    bad = b;
    bad.seqs = NULL;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "batch.seqs");
    bad = b;
    bad.n_outputs = 0;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "n_outputs is 0");
    bad = b;
    bad.outputs = NULL;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "batch.outputs");
    bad = b;
    bad.n_seqs = SIZE_MAX / 4;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "batch.seqs");
    bad = b;
    bad.seqs = (const prge_seq *)((const char *)seqs + 4);
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "aligned");

    prge_seq_pos bad_outs[6];
    memcpy(bad_outs, outs, sizeof outs);
    bad = b;
    bad.outputs = bad_outs;
    bad_outs[5].seq = 2;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT,
               "batch.outputs[5].seq = 2");
    bad_outs[5].seq = 1;
    bad_outs[5].pos = 8;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT,
               "batch.outputs[5].pos = 8");
    bad_outs[5].pos = SIZE_MAX;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT,
               "batch.outputs[5].pos");

    prge_seq bad_seqs[2];
    memcpy(bad_seqs, seqs, sizeof seqs);
    bad = b;
    bad.seqs = bad_seqs;
    static const int32_t oov[] = {504, N_VOCAB, 282};
    static const int32_t negative[] = {504, -3};
    bad_seqs[1].tokens = oov;
    bad_seqs[1].n_tokens = 3;
    bad_outs[5].pos = 2;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT,
               "batch.seqs[1].tokens[1] = 49152");
    bad_seqs[1].tokens = negative;
    bad_seqs[1].n_tokens = 2;
    bad_outs[5].pos = 1;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT,
               "batch.seqs[1].tokens[1] = -3");
    bad_seqs[1].n_tokens = 0;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT,
               "batch.seqs[1].n_tokens is 0");
    bad_seqs[1].tokens = NULL;
    bad_seqs[1].n_tokens = 2;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT,
               "batch.seqs[1].tokens");

    /* Longer than the context (8192), and a batch far larger than memory: errors, no OOM kill. */
    int32_t *zeros = (int32_t *)calloc(8193, sizeof(int32_t));
    bad_seqs[1].tokens = zeros;
    bad_seqs[1].n_tokens = 8193;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 6 * N_VOCAB), PRGE_ERR_INVALID_ARGUMENT, "context");
    enum { HUGE_SEQS = 200000 };
    prge_seq *many = (prge_seq *)malloc(sizeof(prge_seq) * HUGE_SEQS);
    for (size_t i = 0; i < HUGE_SEQS; i++) {
        many[i].tokens = zeros;
        many[i].n_tokens = 8192;
    }
    prge_seq_pos first;
    first.seq = 0;
    first.pos = 0;
    bad.seqs = many;
    bad.n_seqs = HUGE_SEQS;
    bad.outputs = &first;
    bad.n_outputs = 1;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, N_VOCAB), PRGE_ERR_OUT_OF_MEMORY, "MB");
    free(many);
    free(zeros);

    /* Handles of the wrong type in either slot. */
    EXPECT_ERR(prge_forward(m, (const prge_adapter *)m, &b, logits, 6 * N_VOCAB),
               PRGE_ERR_INVALID_ARGUMENT, "not a prge_adapter");
    EXPECT_ERR(prge_forward(m, (const prge_adapter *)(uintptr_t)0xbeef, &b, logits, 6 * N_VOCAB),
               PRGE_ERR_INVALID_ARGUMENT, "not live");
    CHECK(logits[0] == -1234.0f, "failed calls must not write logits");
    free(logits);
}

/* ---- A foreign adapter file (llama.cpp's LoRA layout, no prge.* keys), written here --------
 * rank 2 on blk.0.attn_q.weight (576 x 576), alpha 16, pseudo-random A and B. */
static void put(FILE *f, const void *p, size_t n) { fwrite(p, 1, n, f); }
static void put_u32(FILE *f, uint32_t v) { put(f, &v, 4); }
static void put_u64(FILE *f, uint64_t v) { put(f, &v, 8); }
static void put_str(FILE *f, const char *s) {
    put_u64(f, strlen(s));
    put(f, s, strlen(s));
}
static void put_kv_str(FILE *f, const char *k, const char *v) {
    put_str(f, k);
    put_u32(f, 8); /* GGUF_TYPE_STRING */
    put_str(f, v);
}

static int write_foreign_adapter(const char *path) {
    enum { R = 2, D = 576 };
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    put(f, "GGUF", 4);
    put_u32(f, 3);
    put_u64(f, 2); /* tensors */
    put_u64(f, 4); /* metadata */
    put_kv_str(f, "general.architecture", "llama");
    put_kv_str(f, "general.type", "adapter");
    put_kv_str(f, "adapter.type", "lora");
    put_str(f, "adapter.lora.alpha");
    put_u32(f, 6); /* GGUF_TYPE_FLOAT32 */
    float alpha = 16;
    put(f, &alpha, 4);
    put_str(f, "blk.0.attn_q.weight.lora_a"); /* ne [d_in, r] */
    put_u32(f, 2);
    put_u64(f, D);
    put_u64(f, R);
    put_u32(f, 0); /* F32 */
    put_u64(f, 0);
    put_str(f, "blk.0.attn_q.weight.lora_b"); /* ne [r, d_out] */
    put_u32(f, 2);
    put_u64(f, R);
    put_u64(f, D);
    put_u32(f, 0);
    put_u64(f, (uint64_t)R * D * 4); /* a multiple of 32 */
    long pos = ftell(f);
    while (pos % 32 != 0) {
        fputc(0, f);
        pos++;
    }
    uint32_t x = 12345;
    for (int i = 0; i < 2 * R * D; i++) {
        x = x * 1664525u + 1013904223u;
        float v = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.2f;
        put(f, &v, 4);
    }
    return fclose(f);
}

static void test_adapters(prge_model *m) {
    float *logits = (float *)malloc(sizeof(float) * N_VOCAB);
    float *again = (float *)malloc(sizeof(float) * N_VOCAB);
    prge_adapter *a = NULL;
    size_t n = 0;

    /* Defaults (the training recipe's): all 7 projections of the top 15 layers, rank 2. */
    EXPECT_OK(prge_adapter_create(m, NULL, &a));
    EXPECT_OK(prge_adapter_n_params(a, &n));
    CHECK(n == 15u * 2u * (576 + 192 + 192 + 576 + 1536 + 1536 + 576), "default n_params %zu", n);
    /* B = 0: exactly the base model. */
    CHECK(last_logits(m, a, logits), "forward with a fresh adapter");
    CHECK(max_abs_diff(logits, base_logits, N_VOCAB) == 0.0f,
          "a fresh adapter (B = 0) changed the logits by %g", max_abs_diff(logits, base_logits, N_VOCAB));
    EXPECT_OK(prge_adapter_free(a));

    EXPECT_OK(prge_adapter_create(m, "", &a));
    EXPECT_OK(prge_adapter_free(a));
    EXPECT_OK(prge_adapter_create(
        m, "{\"rank\": 4, \"alpha\": 8, \"targets\": [\"q\", \"attn_v\"], \"layers\": [1, 0], \"seed\": 7}", &a));
    EXPECT_OK(prge_adapter_n_params(a, &n));
    CHECK(n == 2u * 4u * (576 + 192), "n_params %zu for rank 4, q+v, 2 layers", n);

    /* create -> save -> load: same size, same logits. */
    char dir[] = "/tmp/prge-capi-dir-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[128], foreign[128], resaved[128];
    snprintf(path, sizeof path, "%s/fresh.gguf", dir);
    snprintf(foreign, sizeof foreign, "%s/foreign.gguf", dir);
    snprintf(resaved, sizeof resaved, "%s/resaved.gguf", dir);
    EXPECT_OK(prge_adapter_save(a, path));
    prge_adapter *b = NULL;
    EXPECT_OK(prge_adapter_load(m, path, &b));
    EXPECT_OK(prge_adapter_n_params(b, &n));
    CHECK(n == 2u * 4u * (576 + 192), "reloaded n_params %zu", n);
    CHECK(last_logits(m, b, logits), "forward with the reloaded adapter");
    CHECK(max_abs_diff(logits, base_logits, N_VOCAB) == 0.0f, "reloaded fresh adapter changed the logits");
    EXPECT_OK(prge_adapter_free(b));

    /* A foreign adapter with B != 0 changes the logits; save and reload it: bit-identical. */
    CHECK(write_foreign_adapter(foreign) == 0, "cannot write %s", foreign);
    EXPECT_OK(prge_adapter_load(m, foreign, &b));
    EXPECT_OK(prge_adapter_n_params(b, &n));
    CHECK(n == 576u * 2u, "foreign n_params %zu", n);
    CHECK(last_logits(m, b, logits), "forward with the foreign adapter");
    float moved = max_abs_diff(logits, base_logits, N_VOCAB);
    CHECK(moved > 1e-2f && moved < 1e3f, "the foreign adapter moved the logits by %g", moved);
    EXPECT_OK(prge_adapter_save(b, resaved));
    EXPECT_OK(prge_adapter_save(b, resaved)); /* replacing an existing file */
    prge_adapter *c = NULL;
    EXPECT_OK(prge_adapter_load(m, resaved, &c));
    CHECK(last_logits(m, c, again), "forward with the re-saved adapter");
    CHECK(memcmp(logits, again, sizeof(float) * N_VOCAB) == 0,
          "save/load changed the logits by %g", max_abs_diff(logits, again, N_VOCAB));
    EXPECT_OK(prge_adapter_free(c));
    EXPECT_OK(prge_adapter_free(b));

    /* ---- misuse */
    prge_adapter *x = (prge_adapter *)(uintptr_t)1;
    static const struct { const char *json; prge_status want; const char *needle; } bad[] = {
        {"{rank", PRGE_ERR_FORMAT, "json_options: JSON syntax error"},
        {"[]", PRGE_ERR_FORMAT, "expected object"},
        {"{\"rank\": \"8\"}", PRGE_ERR_FORMAT, "$.rank: expected number"},
        {"{\"rank\": 0}", PRGE_ERR_FORMAT, "$.rank: 0 is out of range"},
        {"{\"rank\": 2.5}", PRGE_ERR_FORMAT, "$.rank: expected an integer"},
        {"{\"alpha\": -1}", PRGE_ERR_FORMAT, "$.alpha"},
        {"{\"colour\": 1}", PRGE_ERR_FORMAT, "$.colour: unknown key"},
        {"{\"targets\": [\"q\", \"zz\"]}", PRGE_ERR_FORMAT, "$.targets[1]: unknown target 'zz'"},
        {"{\"targets\": [\"q\", \"attn_q\"]}", PRGE_ERR_FORMAT, "$.targets[1]: target 'attn_q' repeats"},
        {"{\"targets\": []}", PRGE_ERR_FORMAT, "$.targets: empty"},
        {"{\"layers\": [0, 30]}", PRGE_ERR_INVALID_ARGUMENT, "layer 30"},
        {"{\"layers\": [1, 1]}", PRGE_ERR_FORMAT, "$.layers[1]: layer 1 repeats"},
        {"{\"seed\": -1}", PRGE_ERR_FORMAT, "$.seed"},
        {"{\"rank\": 4} x", PRGE_ERR_FORMAT, "syntax error"},
        {"{\"a\\u0000\": 1}", PRGE_ERR_FORMAT, "unknown key"},
        {"\xff", PRGE_ERR_INVALID_ARGUMENT, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        x = (prge_adapter *)(uintptr_t)1;
        EXPECT_ERR(prge_adapter_create(m, bad[i].json, &x), bad[i].want, bad[i].needle);
        CHECK(x == NULL, "*out must be NULL after a failed create (%s)", bad[i].json);
    }
    EXPECT_ERR(prge_adapter_create(m, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(prge_adapter_create(NULL, NULL, &x), PRGE_ERR_INVALID_ARGUMENT, "prge_model handle is NULL");
    EXPECT_ERR(prge_adapter_create((const prge_model *)a, NULL, &x), PRGE_ERR_INVALID_ARGUMENT,
               "is a prge_adapter, not a prge_model");

    EXPECT_ERR(prge_adapter_load(m, "/nonexistent/a.gguf", &x), PRGE_ERR_IO, "/nonexistent/a.gguf");
    CHECK(x == NULL, "*out must be NULL after a failed load");
    EXPECT_ERR(prge_adapter_load(m, model_path, &x), PRGE_ERR_FORMAT, "not an adapter");
    EXPECT_ERR(prge_adapter_load(m, "/proc/self/exe", &x), PRGE_ERR_FORMAT, "magic");
    EXPECT_ERR(prge_adapter_load(m, NULL, &x), PRGE_ERR_INVALID_ARGUMENT, "path");
    EXPECT_ERR(prge_adapter_load(m, "/tmp/\xc3(", &x), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(prge_adapter_load(m, foreign, NULL), PRGE_ERR_INVALID_ARGUMENT, "out");
    {   /* truncated adapter */
        FILE *in = fopen(foreign, "rb"), *out = fopen(path, "wb");
        char buf[600];
        size_t got = in ? fread(buf, 1, sizeof buf, in) : 0;
        if (out) fwrite(buf, 1, got, out);
        if (in) fclose(in);
        if (out) fclose(out);
        EXPECT_ERR(prge_adapter_load(m, path, &x), PRGE_ERR_FORMAT, "truncated");
    }

    EXPECT_ERR(prge_adapter_save(a, "/nonexistent/dir/a.gguf"), PRGE_ERR_IO, "/nonexistent/dir");
    EXPECT_ERR(prge_adapter_save(a, NULL), PRGE_ERR_INVALID_ARGUMENT, "path");
    EXPECT_ERR(prge_adapter_save(a, ""), PRGE_ERR_INVALID_ARGUMENT, "path is empty");
    EXPECT_ERR(prge_adapter_save(a, "/tmp/\xff.gguf"), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(prge_adapter_save((const prge_adapter *)m, path), PRGE_ERR_INVALID_ARGUMENT,
               "is a prge_model, not a prge_adapter");
    EXPECT_ERR(prge_adapter_n_params(a, NULL), PRGE_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT_ERR(prge_adapter_n_params(NULL, &n), PRGE_ERR_INVALID_ARGUMENT, "prge_adapter handle is NULL");
    EXPECT_ERR(prge_adapter_free((prge_adapter *)m), PRGE_ERR_INVALID_ARGUMENT, "not a prge_adapter");
    EXPECT_OK(prge_adapter_free(NULL));

    /* Freed: every adapter function, and forward, refuse it. */
    EXPECT_OK(prge_adapter_free(a));
    EXPECT_ERR(prge_adapter_n_params(a, &n), PRGE_ERR_INVALID_ARGUMENT, "not live");
    EXPECT_ERR(prge_adapter_save(a, path), PRGE_ERR_INVALID_ARGUMENT, "not live");
    EXPECT_ERR(prge_adapter_free(a), PRGE_ERR_INVALID_ARGUMENT, "not live");
    CHECK(!last_logits(m, a, logits) && strstr(prge_last_error(), "not live"), "forward with a freed adapter");

    unlink(path);
    unlink(foreign);
    unlink(resaved);
    rmdir(dir);
    free(logits);
    free(again);
}

static void test_classify(prge_model *m) {
    static const char *const paris[] = {" Paris", " the", " a"};
    float scores[3] = {1, 1, 1};
    size_t best = 99;
    EXPECT_OK(prge_classify(m, NULL, "The capital of France is", paris, 3, scores, &best));
    /* llama.cpp's log-softmax at the last position (dequantized f32) */
    CHECK(fabsf(scores[0] - -0.258082f) <= REF_TOL && fabsf(scores[1] - -2.74075f) <= REF_TOL &&
              fabsf(scores[2] - -5.52793f) <= REF_TOL,
          "log-probs %g %g %g, want -0.258082 -2.74075 -5.52793", scores[0], scores[1], scores[2]);
    CHECK(best == 0, "best %zu", best);

    static const char *const sentiment[] = {" terrible", " great"};
    static const char review[] =
        "A gorgeous, witty, seductive movie full of warmth and wonderful performances. It was";
    EXPECT_OK(prge_classify(m, NULL, review, sentiment, 2, scores, NULL));
    CHECK(isfinite(scores[0]) && isfinite(scores[1]) && scores[0] < 0 && scores[1] < 0,
          "SST-2 log-probs %g %g", scores[0], scores[1]);

    /* ---- misuse; scores stay untouched */
    scores[0] = 42;
    static const char *const two_tokens[] = {" terrible", " great movie"};
    EXPECT_ERR(prge_classify(m, NULL, review, two_tokens, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "labels[1] \" great movie\" is 2 tokens");
    static const char *const empty_label[] = {""};
    EXPECT_ERR(prge_classify(m, NULL, review, empty_label, 1, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "labels[0] \"\" is 0 tokens");
    static const char *const null_label[] = {" great", NULL};
    EXPECT_ERR(prge_classify(m, NULL, review, null_label, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "labels[1] is NULL");
    static const char *const bad_utf8[] = {" great", " \xe2\x82"};
    EXPECT_ERR(prge_classify(m, NULL, review, bad_utf8, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "labels[1] is not valid UTF-8");
    EXPECT_ERR(prge_classify(m, NULL, review, NULL, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT, "labels");
    EXPECT_ERR(prge_classify(m, NULL, review, sentiment, 0, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "n_labels is 0");
    EXPECT_ERR(prge_classify(m, NULL, review, sentiment, SIZE_MAX, scores, &best),
               PRGE_ERR_INVALID_ARGUMENT, "too large");
    EXPECT_ERR(prge_classify(m, NULL, review, sentiment, 2, NULL, &best), PRGE_ERR_INVALID_ARGUMENT,
               "scores");
    EXPECT_ERR(prge_classify(m, NULL, review, sentiment, 2, (float *)((char *)scores + 1), &best),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_classify(m, NULL, "", sentiment, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "prompt is empty");
    EXPECT_ERR(prge_classify(m, NULL, NULL, sentiment, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "prompt");
    EXPECT_ERR(prge_classify(m, NULL, "caf\xe9", sentiment, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "UTF-8");
    EXPECT_ERR(prge_classify(m, (const prge_adapter *)m, review, sentiment, 2, scores, &best),
               PRGE_ERR_INVALID_ARGUMENT, "not a prge_adapter");
    EXPECT_ERR(prge_classify(NULL, NULL, review, sentiment, 2, scores, &best), PRGE_ERR_INVALID_ARGUMENT,
               "NULL");
    CHECK(scores[0] == 42, "a failed classify must not write scores");
}

static void test_generate(prge_model *m) {
    char buf[256];
    size_t len = 0;
    prge_status s = prge_generate(m, NULL, "The capital of France is", 6, buf, sizeof buf, &len);
    CHECK(s == PRGE_OK, "generate: %s", prge_last_error());
    if (s == PRGE_OK) {
        CHECK(strncmp(buf, " Paris", 6) == 0 && strlen(buf) == len, "generated \"%s\" (%zu)", buf, len);
        printf("generate: \"The capital of France is\" -> \"%s\"\n", buf);
        /* The length query, then a buffer one byte short: nothing written. */
        size_t need = 0;
        EXPECT_ERR(prge_generate(m, NULL, "The capital of France is", 1, NULL, 0, &need),
                   PRGE_ERR_BUFFER_TOO_SMALL, "needs");
        CHECK(need == 6, "length query gave %zu (\" Paris\")", need);
        memset(buf, 'X', 8);
        EXPECT_ERR(prge_generate(m, NULL, "The capital of France is", 1, buf, need, &len),
                   PRGE_ERR_BUFFER_TOO_SMALL, "needs 7");
        CHECK(buf[0] == 'X', "a too-small buffer must stay untouched");
        EXPECT_OK(prge_generate(m, NULL, "The capital of France is", 0, buf, sizeof buf, &len));
        CHECK(len == 0 && buf[0] == '\0', "n_predict 0 gave \"%s\"", buf);
    }
    EXPECT_ERR(prge_generate(m, NULL, "x", -1, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "n_predict");
    EXPECT_ERR(prge_generate(m, NULL, NULL, 4, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "prompt");
    EXPECT_ERR(prge_generate(m, NULL, "\xc0\xaf", 4, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(prge_generate(m, NULL, "", 4, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "prompt is empty");
    EXPECT_ERR(prge_generate(m, NULL, "x", 4, NULL, 16, &len), PRGE_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT_ERR(prge_generate(m, (const prge_adapter *)(uintptr_t)77, "x", 4, buf, sizeof buf, &len),
               PRGE_ERR_INVALID_ARGUMENT, "not live");
    EXPECT_ERR(prge_generate(NULL, NULL, "x", 4, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "NULL");
}

/* Forwards from two threads at once on two models, and two more on one shared model
 * (serialized by the library): each gets the single-threaded result bit for bit. */
struct fwd_worker { prge_model *m; int ok; };

static void *fwd_run(void *arg) {
    struct fwd_worker *w = (struct fwd_worker *)arg;
    float *out = (float *)malloc(sizeof(float) * N_VOCAB);
    w->ok = 1;
    for (int i = 0; i < 2; i++)
        if (!last_logits(w->m, NULL, out) || memcmp(out, base_logits, sizeof(float) * N_VOCAB) != 0) w->ok = 0;
    free(out);
    return NULL;
}

static void test_forward_threads(prge_model *m) {
    prge_model *m2 = NULL;
    EXPECT_OK(prge_model_load(model_path, NULL, &m2));
    struct fwd_worker w[3];
    pthread_t t[3];
    w[0].m = m;
    w[1].m = m2;
    w[2].m = m;
    for (int i = 0; i < 3; i++) {
        w[i].ok = 0;
        CHECK(pthread_create(&t[i], NULL, fwd_run, &w[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].ok, "forward thread %d got a different result", i);
    }
    /* An adapter outlives the model it was made for and runs on another load of the file. */
    prge_adapter *a = NULL;
    EXPECT_OK(prge_adapter_create(m2, "{\"rank\": 2, \"layers\": [29]}", &a));
    EXPECT_OK(prge_model_free(m2));
    size_t n = 0;
    EXPECT_OK(prge_adapter_n_params(a, &n));
    CHECK(n == 2u * (576 + 192 + 192 + 576 + 1536 + 1536 + 576), "n_params %zu", n);
    float *out = (float *)malloc(sizeof(float) * N_VOCAB);
    CHECK(last_logits(m, a, out) && memcmp(out, base_logits, sizeof(float) * N_VOCAB) == 0,
          "fresh adapter of a freed model on another handle");
    free(out);
    EXPECT_OK(prge_adapter_free(a));
}

/* ---- Trainer ----------------------------------------------------------------------------- */

/* Small and fast: q = 2, batch 2, LoRA only on the last two layers (everything below runs once
 * for all 2q copies). */
static const char trainer_config[] =
    "{\"task\": \"sst2\", \"q\": 2, \"batch\": 2, \"lr\": 0.05, \"eps\": 0.01, \"seed\": 3,"
    " \"eval_every\": 0, \"loss\": \"full\", \"adapter\": {\"rank\": 4, \"layers\": [28, 29]}}";
static const char train_jsonl[] =
    "{\"sentence\": \"it 's a charming and often affecting journey . \", \"label\": 1}\n"
    "{\"sentence\": \"unflinchingly bleak and desperate \", \"label\": 0}\n"
    "\n"
    "{\"sentence\": \"the acting , costumes , music , cinematography and sound are all astounding . \", \"label\": 1}\r\n"
    "{\"sentence\": \"it 's slow -- very , very slow . \", \"label\": 0}";
static const char dev_jsonl[] =
    "{\"sentence\": \"a gorgeous , witty , seductive movie . \", \"label\": 1}\n"
    "{\"sentence\": \"the movie is a dull , dumb mess . \", \"label\": 0}\n";
static const char step_jsonl[] =
    "{\"sentence\": \"a warm , funny , engaging film . \", \"label\": 1}\n"
    "{\"sentence\": \"a sour little movie . \", \"label\": 0}\n";

struct progress_log {
    int calls;
    int stop_at;
    uint64_t last_step;
    int sane;
    prge_model *m;     /* when set, the callback also uses the model and the trainer */
    prge_trainer *t;
    int reentry_ok;
};

static int on_progress(const prge_progress *p, void *user) {
    struct progress_log *log = (struct progress_log *)user;
    log->calls++;
    if (!(p->step == log->last_step + 1 && isfinite(p->train_loss) && p->train_loss > 0 &&
          p->elapsed_s >= 0 && (p->evaluated == 0 || p->evaluated == 1)))
        log->sane = 0;
    log->last_step = p->step;
    if (log->m) {
        /* The model is free while its trainer runs: same logits as before training started. */
        float *out = (float *)malloc(sizeof(float) * N_VOCAB);
        if (!last_logits(log->m, NULL, out) || memcmp(out, base_logits, sizeof(float) * N_VOCAB) != 0)
            log->reentry_ok = 0;
        free(out);
        /* The trainer itself is busy: an error, not a deadlock; n_steps still answers. */
        uint64_t steps = 0;
        if (prge_trainer_step(log->t, step_jsonl, strlen(step_jsonl), NULL, 0, NULL) != PRGE_ERR_STATE ||
            strstr(prge_last_error(), "busy") == NULL)
            log->reentry_ok = 0;
        if (prge_trainer_n_steps(log->t, &steps) != PRGE_OK || steps != p->step) log->reentry_ok = 0;
    }
    return log->stop_at != 0 && log->calls >= log->stop_at;
}

static prge_trainer *new_trainer(prge_model *m, const prge_adapter *a) {
    prge_trainer *t = NULL;
    prge_status s = prge_trainer_create(m, a, trainer_config, &t);
    CHECK(s == PRGE_OK && t != NULL, "trainer_create: %s", prge_last_error());
    if (t) {
        size_t n = 0;
        EXPECT_OK(prge_trainer_add_jsonl(t, PRGE_SPLIT_TRAIN, train_jsonl, strlen(train_jsonl), &n));
        CHECK(n == 4, "added %zu training examples", n);
        EXPECT_OK(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, dev_jsonl, strlen(dev_jsonl), &n));
        CHECK(n == 2, "added %zu dev examples", n);
    }
    return t;
}

static void test_trainer(prge_model *m) {
    float *logits = (float *)malloc(sizeof(float) * N_VOCAB);
    float *again = (float *)malloc(sizeof(float) * N_VOCAB);
    char dir[] = "/tmp/prge-capi-train-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char ckpt[128], saved[128];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.gguf", dir);
    snprintf(saved, sizeof saved, "%s/trained.gguf", dir);

    /* The trainer copies the adapter it is given: freeing that one right away is fine. */
    prge_adapter *init = NULL;
    EXPECT_OK(prge_adapter_create(m, "{\"rank\": 4, \"layers\": [28, 29]}", &init));
    prge_trainer *t = new_trainer(m, init);
    EXPECT_OK(prge_adapter_free(init));
    if (!t) return;

    uint64_t steps = 99;
    EXPECT_OK(prge_trainer_n_steps(t, &steps));
    CHECK(steps == 0, "fresh trainer at step %llu", (unsigned long long)steps);

    /* One P-RGE step: 2q = 4 finite losses, and B moves. */
    float losses[8];
    size_t nl = 0;
    for (int i = 0; i < 8; i++) losses[i] = -1;
    EXPECT_OK(prge_trainer_step(t, step_jsonl, strlen(step_jsonl), losses, 8, &nl));
    CHECK(nl == 4, "a q = 2 step gave %zu losses", nl);
    int finite = 1;
    for (size_t i = 0; i < 4; i++) finite &= isfinite(losses[i]) && losses[i] > 0;
    CHECK(finite && losses[4] == -1, "losses %g %g %g %g", losses[0], losses[1], losses[2], losses[3]);
    CHECK(losses[0] != losses[2], "L+ and L- are equal: no perturbation?");
    EXPECT_OK(prge_trainer_step(t, step_jsonl, strlen(step_jsonl), NULL, 0, &nl));
    CHECK(nl == 0, "losses skipped, yet n_losses %zu", nl);
    EXPECT_OK(prge_trainer_n_steps(t, &steps));
    CHECK(steps == 2, "after two steps: %llu", (unsigned long long)steps);

    prge_adapter *cur = NULL;
    EXPECT_OK(prge_trainer_get_adapter(t, PRGE_ADAPTER_CURRENT, &cur));
    CHECK(last_logits(m, cur, logits), "forward with the trained adapter: %s", prge_last_error());
    float moved = max_abs_diff(logits, base_logits, N_VOCAB);
    CHECK(moved > 0 && isfinite(moved), "two steps moved the logits by %g", moved);
    /* A trained adapter (B != 0) saved and loaded: identical logits. */
    EXPECT_OK(prge_adapter_save(cur, saved));
    prge_adapter *loaded = NULL;
    EXPECT_OK(prge_adapter_load(m, saved, &loaded));
    CHECK(last_logits(m, loaded, again) && memcmp(logits, again, sizeof(float) * N_VOCAB) == 0,
          "trained adapter: save/load changed the logits by %g", max_abs_diff(logits, again, N_VOCAB));
    EXPECT_OK(prge_adapter_free(loaded));
    EXPECT_OK(prge_adapter_free(cur));

    float acc = -1, loss = -1;
    size_t n = 0;
    EXPECT_OK(prge_trainer_evaluate(t, PRGE_SPLIT_DEV, &acc, &loss, &n));
    CHECK(n == 2 && acc >= 0 && acc <= 1 && isfinite(loss) && loss > 0, "dev: acc %g loss %g n %zu", acc, loss, n);
    EXPECT_OK(prge_trainer_evaluate(t, PRGE_SPLIT_TRAIN, NULL, NULL, &n));
    CHECK(n == 4, "train set has %zu examples", n);

    /* Checkpoint at step 2, train 2 more steps; a second trainer resumed from the checkpoint
     * and trained the same 2 steps must end bit for bit where the first did. */
    EXPECT_OK(prge_trainer_save_checkpoint(t, ckpt));
    struct progress_log plog = {0, 0, 2, 1, m, t, 1};
    EXPECT_OK(prge_trainer_train(t, 2, 0, on_progress, &plog));
    CHECK(plog.calls == 2 && plog.sane, "progress: %d calls, sane %d", plog.calls, plog.sane);
    CHECK(plog.reentry_ok, "calls from the progress callback misbehaved");
    EXPECT_OK(prge_trainer_n_steps(t, &steps));
    CHECK(steps == 4, "after train(2): %llu", (unsigned long long)steps);
    EXPECT_OK(prge_trainer_get_adapter(t, PRGE_ADAPTER_CURRENT, &cur));
    CHECK(last_logits(m, cur, logits), "forward: %s", prge_last_error());
    EXPECT_OK(prge_adapter_free(cur));
    prge_adapter *best = NULL;
    EXPECT_OK(prge_trainer_get_adapter(t, PRGE_ADAPTER_BEST, &best));
    EXPECT_OK(prge_adapter_free(best));

    prge_trainer *r = new_trainer(m, NULL);
    if (r) {
        EXPECT_OK(prge_trainer_load_checkpoint(r, ckpt));
        EXPECT_OK(prge_trainer_n_steps(r, &steps));
        CHECK(steps == 2, "resumed at step %llu", (unsigned long long)steps);
        EXPECT_OK(prge_trainer_train(r, 2, 0, NULL, NULL));
        EXPECT_OK(prge_trainer_get_adapter(r, PRGE_ADAPTER_CURRENT, &cur));
        CHECK(last_logits(m, cur, again) && memcmp(logits, again, sizeof(float) * N_VOCAB) == 0,
              "resumed training differs by %g in the logits", max_abs_diff(logits, again, N_VOCAB));
        EXPECT_OK(prge_adapter_free(cur));

        /* A callback that stops: PRGE_ERR_CANCELLED after finishing that step. */
        struct progress_log stop = {0, 1, 4, 1, NULL, NULL, 1};
        EXPECT_ERR(prge_trainer_train(r, 5, 0, on_progress, &stop), PRGE_ERR_CANCELLED, "progress callback");
        EXPECT_OK(prge_trainer_n_steps(r, &steps));
        CHECK(stop.calls == 1 && steps == 5, "cancelled run: %d calls, step %llu", stop.calls,
              (unsigned long long)steps);
        EXPECT_OK(prge_trainer_free(r));
    }

    /* ---- misuse */
    prge_trainer *x = (prge_trainer *)(uintptr_t)1;
    static const struct { const char *json; prge_status want; const char *needle; } bad[] = {
        {"{\"q\": \"two\"}", PRGE_ERR_FORMAT, "json_config: $.q: expected number"},
        {"{\"q\": 0}", PRGE_ERR_FORMAT, "$.q: 0 is out of range"},
        {"{\"colour\": 1}", PRGE_ERR_FORMAT, "$.colour: unknown key"},
        {"{\"estimator\": \"adam\"}", PRGE_ERR_FORMAT, "$.estimator: unknown value 'adam'"},
        {"{\"adapter\": {\"rank\": 0}}", PRGE_ERR_FORMAT, "$.adapter.rank"},
        {"{\"task\": \"nope\"}", PRGE_ERR_FORMAT, "unknown task 'nope'"},
        {"{\"task\": {\"template\": \"{sentence} It was\", \"labels\": [\" great\", \" very bad\"]}}",
         PRGE_ERR_INVALID_ARGUMENT, "exactly one token"},
        {"{\"lr\": 1e-3", PRGE_ERR_FORMAT, "json_config: JSON syntax error"},
        {"\xfe", PRGE_ERR_INVALID_ARGUMENT, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        x = (prge_trainer *)(uintptr_t)1;
        EXPECT_ERR(prge_trainer_create(m, NULL, bad[i].json, &x), bad[i].want, bad[i].needle);
        CHECK(x == NULL, "*out must be NULL after a failed create (%s)", bad[i].json);
    }
    EXPECT_ERR(prge_trainer_create(m, NULL, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(prge_trainer_create(m, (const prge_adapter *)t, NULL, &x), PRGE_ERR_INVALID_ARGUMENT,
               "is a prge_trainer, not a prge_adapter");

    size_t before = 0, added = 77;
    EXPECT_OK(prge_trainer_evaluate(t, PRGE_SPLIT_DEV, NULL, NULL, &before));
    static const char broken[] = "{\"sentence\": \"fine\", \"label\": 1}\n{\"sentence\": \"x\", \"label\": 1}\n{\"sentence\": ";
    EXPECT_ERR(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, broken, strlen(broken), &added), PRGE_ERR_FORMAT, "jsonl:3");
    static const char nolabel[] = "{\"sentence\": \"fine\", \"label\": 1}\n{\"sentence\": \"x\"}\n";
    EXPECT_ERR(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, nolabel, strlen(nolabel), &added), PRGE_ERR_FORMAT,
               "jsonl:2: $.label: missing");
    static const char badlabel[] = "{\"sentence\": \"fine\", \"label\": 7}\n";
    EXPECT_ERR(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, badlabel, strlen(badlabel), &added), PRGE_ERR_FORMAT,
               "$.label: 7 is out of range");
    static const char array_line[] = "[1, 2]\n";
    EXPECT_ERR(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, array_line, strlen(array_line), &added), PRGE_ERR_FORMAT,
               "jsonl:1: expected a JSON object");
    CHECK(added == 77, "a failed add must not write n_added");
    EXPECT_OK(prge_trainer_evaluate(t, PRGE_SPLIT_DEV, NULL, NULL, &n));
    CHECK(n == before, "a failed add changed the dev set: %zu -> %zu", before, n);
    EXPECT_ERR(prge_trainer_add_jsonl(t, 2, dev_jsonl, strlen(dev_jsonl), NULL), PRGE_ERR_INVALID_ARGUMENT, "split 2");
    EXPECT_ERR(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, NULL, 5, NULL), PRGE_ERR_INVALID_ARGUMENT, "jsonl");
    EXPECT_ERR(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, "{\"sentence\": \"\xff\"}", 17, NULL),
               PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_OK(prge_trainer_add_jsonl(t, PRGE_SPLIT_DEV, NULL, 0, &added));
    CHECK(added == 0, "empty JSONL added %zu", added);

    EXPECT_OK(prge_trainer_n_steps(t, &steps));
    uint64_t steps_before = steps;
    EXPECT_ERR(prge_trainer_step(t, step_jsonl, strlen(step_jsonl), losses, 3, &nl), PRGE_ERR_BUFFER_TOO_SMALL,
               "room for 3");
    CHECK(nl == 4, "a too-small losses buffer should report the 4 needed, got %zu", nl);
    EXPECT_ERR(prge_trainer_step(t, step_jsonl, strlen(step_jsonl), NULL, 4, &nl), PRGE_ERR_INVALID_ARGUMENT, "NULL");
    EXPECT_ERR(prge_trainer_step(t, "", 0, losses, 8, &nl), PRGE_ERR_INVALID_ARGUMENT, "no examples");
    EXPECT_ERR(prge_trainer_step(t, "{\"sentence\": 5}", 15, losses, 8, &nl), PRGE_ERR_FORMAT, "jsonl:1");
    EXPECT_ERR(prge_trainer_step(t, step_jsonl, SIZE_MAX, losses, 8, &nl), PRGE_ERR_INVALID_ARGUMENT, "too large");
    EXPECT_OK(prge_trainer_n_steps(t, &steps));
    CHECK(steps == steps_before, "failed steps changed the step count");

    EXPECT_ERR(prge_trainer_train(t, 0, 0, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "both 0");
    EXPECT_ERR(prge_trainer_train(t, UINT64_MAX, 0, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "over the limit");
    EXPECT_ERR(prge_trainer_train(t, 1, -1, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "max_seconds");
    EXPECT_ERR(prge_trainer_train(t, 1, INFINITY, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "max_seconds");
    EXPECT_ERR(prge_trainer_train(t, 1, NAN, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "max_seconds");
    EXPECT_ERR(prge_trainer_evaluate(t, 5, &acc, &loss, &n), PRGE_ERR_INVALID_ARGUMENT, "split 5");
    EXPECT_ERR(prge_trainer_evaluate(t, PRGE_SPLIT_DEV, (float *)((char *)losses + 1), &loss, &n),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_trainer_get_adapter(t, 2, &cur), PRGE_ERR_INVALID_ARGUMENT, "which 2");
    EXPECT_ERR(prge_trainer_get_adapter(t, PRGE_ADAPTER_BEST, NULL), PRGE_ERR_INVALID_ARGUMENT, "out");
    EXPECT_ERR(prge_trainer_save_checkpoint(t, "/nonexistent/dir/c.gguf"), PRGE_ERR_IO, "/nonexistent/dir");
    EXPECT_ERR(prge_trainer_save_checkpoint(t, NULL), PRGE_ERR_INVALID_ARGUMENT, "path");
    EXPECT_ERR(prge_trainer_load_checkpoint(t, "/nonexistent/c.gguf"), PRGE_ERR_IO, "/nonexistent/c.gguf");
    EXPECT_ERR(prge_trainer_load_checkpoint(t, saved), PRGE_ERR_FORMAT, saved); /* an adapter, not a checkpoint */
    EXPECT_ERR(prge_trainer_load_checkpoint(t, "\xc3\x28"), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
    EXPECT_ERR(prge_trainer_n_steps(t, NULL), PRGE_ERR_INVALID_ARGUMENT, "NULL");

    /* Wrong-type, made-up and freed handles. */
    prge_trainer *handles[3];
    const char *needles[3] = {"is a prge_model, not a prge_trainer", "not live", "not live"};
    handles[0] = (prge_trainer *)m;
    handles[1] = (prge_trainer *)(uintptr_t)0x7777;
    EXPECT_OK(prge_trainer_free(t));
    handles[2] = t;
    for (int i = 0; i < 3; i++) {
        prge_trainer *h = handles[i];
        const char *nd = needles[i];
        EXPECT_ERR(prge_trainer_add_jsonl(h, 0, dev_jsonl, strlen(dev_jsonl), NULL), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_step(h, step_jsonl, strlen(step_jsonl), NULL, 0, NULL), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_train(h, 1, 0, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_evaluate(h, 1, &acc, &loss, &n), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_get_adapter(h, 0, &cur), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_save_checkpoint(h, ckpt), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_load_checkpoint(h, ckpt), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_n_steps(h, &steps), PRGE_ERR_INVALID_ARGUMENT, nd);
        EXPECT_ERR(prge_trainer_free(h), PRGE_ERR_INVALID_ARGUMENT, nd);
    }
    EXPECT_ERR(prge_trainer_n_steps(NULL, &steps), PRGE_ERR_INVALID_ARGUMENT, "prge_trainer handle is NULL");
    EXPECT_OK(prge_trainer_free(NULL));

    unlink(ckpt);
    unlink(saved);
    rmdir(dir);
    free(logits);
    free(again);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    model_path = argv[1];

    test_version_and_status();
    test_last_error();
    test_params();
    test_load_errors();

    prge_model *m = NULL;
    EXPECT_OK(prge_model_load(model_path, NULL, &m));
    if (m == NULL) {
        printf("cannot load %s: %s\n%d passed, %d failed\n", model_path, prge_last_error(), passed,
               failed + 1);
        return 1;
    }
    test_metadata(m);
    test_tokens(m);
    test_threads(m);
    test_forward(m);
    test_adapters(m);
    test_classify(m);
    test_generate(m);
    test_trainer(m);
    test_forward_threads(m);

    prge_model_params p;
    prge_model_default_params(&p);
    p.n_threads = 1;
    p.numeric_mode = PRGE_NUMERIC_BF16;
    prge_model *m2 = NULL;
    EXPECT_OK(prge_model_load(model_path, &p, &m2));
    CHECK(m2 != NULL && m2 != m, "second handle");
    EXPECT_OK(prge_model_free(m2));
    p.numeric_mode = PRGE_NUMERIC_INT8;
    m2 = NULL;
    EXPECT_OK(prge_model_load(model_path, &p, &m2));
    CHECK(m2 != NULL, "int8 handle");
    EXPECT_OK(prge_model_free(m2));

    test_bad_handle(NULL, "NULL");
    test_bad_handle((prge_model *)(uintptr_t)0xdead0, "not live");
    EXPECT_OK(prge_model_free(m));
    test_bad_handle(m, "not live");
    EXPECT_ERR(prge_model_free(m), PRGE_ERR_INVALID_ARGUMENT, "not live");
    EXPECT_OK(prge_model_free(NULL));

    free(base_logits);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
