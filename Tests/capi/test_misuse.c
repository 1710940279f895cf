/*
 * The C ABI misuse suite, beyond test_capi.c (which covers NULL, freed, made-up and wrong-type
 * handles, the basic size and alignment checks, and shared-model threads): hostile GGUF files
 * with absurd sizes, a prompt longer than the context, a model that claims an absurd context,
 * misaligned pointers for every remaining typed argument, sizes that wrap the address space,
 * malformed UTF-8 of every kind, hostile JSON (deep nesting, huge numbers), and races the header
 * allows: freeing a handle while other threads use it, two threads freeing one handle, handles
 * created and freed from many threads, two threads stepping one trainer. Every misuse must come
 * back as an error status with a message; nothing may crash, hang or be OOM-killed.
 * Built as strict C11 and as C++17 like test_capi.c (see the Makefile).
 *
 * usage: test_misuse MODEL.gguf     (the reference model, SmolLM2-135M-Instruct Q4_1)
 */
#if !defined(__cplusplus) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, mkdtemp, pthreads under -std=c11 */
#endif
#include "prge.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h" /* CHECK, EXPECT_OK, EXPECT_ERR and the pass/fail counts */

/* Any failure status with a non-empty message (for cases where only "no crash" matters). */
#define EXPECT_FAIL(call)                                                                  \
    do {                                                                                   \
        prge_status s_ = (call);                                                           \
        const char *m_ = prge_last_error();                                                \
        CHECK(s_ != PRGE_OK && m_ != NULL && m_[0] != '\0', "%s -> %d (%s) \"%s\"", #call, \
              s_, prge_status_string(s_), m_ ? m_ : "(null)");                            \
    } while (0)

static void sleep_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* A pointer `off` bytes past `p`: misaligned for anything wider than a byte. */
#define MISALIGN(type, p, off) ((type)(void *)((char *)(p) + (off)))

static const char *model_path;
static char tmpdir[] = "/tmp/prge-misuse-XXXXXX";

/* ---- hostile GGUF files ----------------------------------------------------------------- */

static void put(FILE *f, const void *p, size_t n) { fwrite(p, 1, n, f); }
static void put_u32(FILE *f, uint32_t v) { put(f, &v, 4); }
static void put_u64(FILE *f, uint64_t v) { put(f, &v, 8); }
static void put_str(FILE *f, const char *s) {
    put_u64(f, strlen(s));
    put(f, s, strlen(s));
}

/* A GGUF v3 header (magic, version, tensor count, metadata count); the caller writes the rest. */
static FILE *gguf_begin(const char *path, uint64_t n_tensors, uint64_t n_kv) {
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    put(f, "GGUF", 4);
    put_u32(f, 3);
    put_u64(f, n_tensors);
    put_u64(f, n_kv);
    return f;
}

static void pad(FILE *f, size_t n) {
    for (size_t i = 0; i < n; i++) fputc(0, f);
}

/* Copies the model with the uint32 value of metadata `key` replaced by `value`. */
static int patched_model(const char *out, const char *key, uint32_t value) {
    FILE *in = fopen(model_path, "rb"), *o = fopen(out, "wb");
    if (!in || !o) {
        if (in) fclose(in);
        if (o) fclose(o);
        return -1;
    }
    enum { CHUNK = 1 << 20 };
    char *buf = (char *)malloc(CHUNK);
    size_t n, total = 0;
    int found = 0;
    while ((n = fread(buf, 1, CHUNK, in)) > 0) {
        if (total == 0) { /* the key sits in the first kilobytes */
            size_t kl = strlen(key);
            for (size_t i = 8; i + kl + 8 <= n; i++) {
                uint64_t len;
                memcpy(&len, buf + i - 8, 8);
                uint32_t type;
                memcpy(&type, buf + i + kl, 4);
                if (len == kl && memcmp(buf + i, key, kl) == 0 && type == 4 /* uint32 */) {
                    memcpy(buf + i + kl + 4, &value, 4);
                    found = 1;
                    break;
                }
            }
        }
        fwrite(buf, 1, n, o);
        total += n;
    }
    free(buf);
    fclose(in);
    return fclose(o) == 0 && found ? 0 : -1;
}

/* A GGUF file whose only content is the header of "tokenizer.ggml.tokens", an array of `count`
 * strings, and none of the strings. */
static void write_token_array(const char *p, uint64_t count) {
    FILE *f = gguf_begin(p, 0, 1);
    put_str(f, "tokenizer.ggml.tokens");
    put_u32(f, 9); /* array */
    put_u32(f, 8); /* of strings */
    put_u64(f, count);
    pad(f, 64);
    fclose(f);
}

static void test_hostile_files(void) {
    char p[256];
    prge_model *m = (prge_model *)(uintptr_t)1;
    FILE *f;

    snprintf(p, sizeof p, "%s/empty.gguf", tmpdir);
    f = fopen(p, "wb");
    if (f) fclose(f);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "too short");
    CHECK(m == NULL, "*out must be NULL after a failed load");

    /* 2^62 tensors, 2^62 metadata pairs, a 2^63-byte key, a 2^60-element array: each refused by
     * its limit before anything is sized by it. */
    snprintf(p, sizeof p, "%s/tensors.gguf", tmpdir);
    f = gguf_begin(p, (uint64_t)1 << 62, 0);
    pad(f, 64);
    fclose(f);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "tensor count");
    f = gguf_begin(p, 0, (uint64_t)1 << 62);
    pad(f, 64);
    fclose(f);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "metadata count");
    f = gguf_begin(p, 0, 1);
    put_u64(f, (uint64_t)1 << 63);
    pad(f, 64);
    fclose(f);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "exceeds the limit");
    write_token_array(p, (uint64_t)1 << 60);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "exceeds the limit");
    /* Within the count limit, but more elements than the file has bytes. */
    write_token_array(p, (uint64_t)1 << 26);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "truncated");
    /* A tensor of 2^40 elements at an offset near 2^62: no mapping past the end. */
    f = gguf_begin(p, 1, 0);
    put_str(f, "token_embd.weight");
    put_u32(f, 2);
    put_u64(f, (uint64_t)1 << 20);
    put_u64(f, (uint64_t)1 << 20);
    put_u32(f, 0);
    put_u64(f, (uint64_t)1 << 61);
    pad(f, 64);
    fclose(f);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "token_embd.weight");
    /* The same files as adapters and checkpoints. */
    prge_model *model = NULL;
    EXPECT_OK(prge_model_load(model_path, NULL, &model));
    prge_adapter *a = (prge_adapter *)(uintptr_t)1;
    EXPECT_ERR(prge_adapter_load(model, p, &a), PRGE_ERR_FORMAT, "token_embd.weight");
    CHECK(a == NULL, "*out must be NULL after a failed adapter load");
    prge_trainer *t = NULL;
    EXPECT_OK(prge_trainer_create(model, NULL, "{\"q\": 1, \"adapter\": {\"rank\": 1, \"layers\": [29]}}", &t));
    EXPECT_ERR(prge_trainer_load_checkpoint(t, p), PRGE_ERR_FORMAT, "token_embd.weight");
    EXPECT_ERR(prge_trainer_load_checkpoint(t, "/dev/null"), PRGE_ERR_IO, "not a regular file");
    EXPECT_OK(prge_trainer_free(t));
    EXPECT_OK(prge_model_free(model));
    unlink(p);
    snprintf(p, sizeof p, "%s/empty.gguf", tmpdir);
    unlink(p);
    EXPECT_ERR(prge_model_load("/dev/zero", NULL, &m), PRGE_ERR_IO, "not a regular file");

    /* The reference model with absurd hyper-parameters. */
    snprintf(p, sizeof p, "%s/patched.gguf", tmpdir);
    CHECK(patched_model(p, "llama.block_count", 5000) == 0, "cannot patch %s", p);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "block_count 5000");
    CHECK(patched_model(p, "llama.block_count", 31) == 0, "cannot patch %s", p);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "blk.30");
    CHECK(patched_model(p, "llama.embedding_length", 0) == 0, "cannot patch %s", p);
    EXPECT_ERR(prge_model_load(p, NULL, &m), PRGE_ERR_FORMAT, "embedding_length");
    CHECK(patched_model(p, "llama.embedding_length", 0xffffffffu) == 0, "cannot patch %s", p);
    EXPECT_FAIL(prge_model_load(p, NULL, &m));

    /* A context of 2^32 - 1 tokens loads (nothing is sized by it at load time); what would need
     * memory for it is refused before allocating. */
    CHECK(patched_model(p, "llama.context_length", 0xffffffffu) == 0, "cannot patch %s", p);
    m = NULL;
    EXPECT_OK(prge_model_load(p, NULL, &m));
    if (m) {
        size_t ctx = 0;
        EXPECT_OK(prge_model_n_ctx_train(m, &ctx));
        CHECK(ctx == 0xffffffffu, "n_ctx_train %zu", ctx);
        char buf[64];
        size_t len = 0;
        /* The KV cache for prompt + INT32_MAX tokens: 30 layers x 2 x 192 floats per token. */
        EXPECT_ERR(prge_generate(m, NULL, "Hello", INT32_MAX, buf, sizeof buf, &len), PRGE_ERR_OUT_OF_MEMORY, "MB");
        EXPECT_OK(prge_generate(m, NULL, "The capital of France is", 2, buf, sizeof buf, &len));
        /* One sequence of 2^24 tokens, within this context: its scratch (~400 GB) is refused. */
        int32_t *zeros = (int32_t *)calloc((size_t)1 << 24, sizeof(int32_t));
        prge_seq s;
        prge_seq_pos o;
        const prge_batch b = one_seq_batch(&s, &o, zeros, (size_t)1 << 24, 0);
        float *logits = (float *)malloc(sizeof(float) * 49152);
        EXPECT_ERR(prge_forward(m, NULL, &b, logits, 49152), PRGE_ERR_OUT_OF_MEMORY, "MB");
        free(logits);
        free(zeros);
        EXPECT_OK(prge_model_free(m));
    }
    unlink(p);
}

/* ---- a prompt longer than the context ----------------------------------------------------- */

static void test_long_prompt(prge_model *m) {
    /* " a" is one token: 9000 of them is past the 8192-token context. */
    size_t n = 9000;
    char *prompt = (char *)malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) memcpy(prompt + 2 * i, " a", 2);
    prompt[2 * n] = '\0';
    size_t count = 0;
    EXPECT_ERR(prge_tokenize(m, prompt, 2 * n, 0, 0, NULL, 0, &count), PRGE_ERR_BUFFER_TOO_SMALL, "has");
    CHECK(count >= 8193, "%zu tokens", count);
    char buf[64];
    size_t len = 0;
    EXPECT_ERR(prge_generate(m, NULL, prompt, 4, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "context");
    static const char *const labels[] = {" great", " terrible"};
    float scores[2] = {7, 7};
    EXPECT_ERR(prge_classify(m, NULL, prompt, labels, 2, scores, NULL), PRGE_ERR_INVALID_ARGUMENT, "context");
    CHECK(scores[0] == 7, "a failed classify must not write scores");
    free(prompt);

    /* A trainer example far longer than max_length is cut (from the left), not refused. */
    prge_trainer *t = NULL;
    EXPECT_OK(prge_trainer_create(m, NULL,
                                  "{\"q\": 1, \"batch\": 1, \"max_length\": 16, \"eval_every\": 0,"
                                  " \"adapter\": {\"rank\": 1, \"layers\": [-1], \"targets\": [\"q\"]}}",
                                  &t));
    if (t) {
        size_t words = 20000;
        size_t cap = 64 + 2 * words;
        char *line = (char *)malloc(cap);
        size_t at = (size_t)snprintf(line, cap, "{\"sentence\": \"");
        for (size_t i = 0; i < words; i++) memcpy(line + at + 2 * i, "a ", 2);
        at += 2 * words;
        at += (size_t)snprintf(line + at, cap - at, "\", \"label\": 1}");
        float losses[2];
        size_t nl = 0;
        EXPECT_OK(prge_trainer_step(t, line, at, losses, 2, &nl));
        CHECK(nl == 2 && isfinite(losses[0]) && isfinite(losses[1]), "losses %zu: %g %g", nl, losses[0], losses[1]);
        free(line);
        EXPECT_OK(prge_trainer_free(t));
    }
}

/* ---- every remaining typed argument, misaligned; sizes that wrap ---------------------------- */

static void test_alignment_and_sizes(prge_model *m) {
    uint64_t raw[16];
    memset(raw, 0, sizeof raw);
    static const int32_t hello[] = {19556, 905};
    char buf[64];
    size_t len = 0;

    EXPECT_ERR(prge_model_load(model_path, MISALIGN(const prge_model_params *, raw, 2), MISALIGN(prge_model **, raw, 64)),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    prge_model_params p;
    prge_model_default_params(&p);
    EXPECT_ERR(prge_model_load(model_path, &p, MISALIGN(prge_model **, raw, 3)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_model_architecture(m, buf, sizeof buf, MISALIGN(size_t *, raw, 1)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_model_meta_str(m, "general.name", buf, sizeof buf, MISALIGN(size_t *, raw, 4)),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_tokenize(m, "a", 1, 0, 0, (int32_t *)(void *)raw, 4, MISALIGN(size_t *, raw, 2)),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    /* cap * 4 bytes would wrap the address space. */
    EXPECT_ERR(prge_tokenize(m, "a", 1, 0, 0, (int32_t *)(void *)raw, SIZE_MAX / 2, &len), PRGE_ERR_INVALID_ARGUMENT,
               "");
    EXPECT_ERR(prge_detokenize(m, MISALIGN(const int32_t *, raw, 1), 2, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    EXPECT_ERR(prge_detokenize(m, hello, SIZE_MAX, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "too large");
    EXPECT_ERR(prge_detokenize(m, hello, SIZE_MAX / 4 + 1, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "");
    EXPECT_ERR(prge_detokenize(m, hello, 2, buf, sizeof buf, MISALIGN(size_t *, raw, 6)), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");

    /* Forward: the batch struct, its arrays and a sequence's tokens, each misaligned. */
    prge_seq s;
    prge_seq_pos o;
    const prge_batch b = one_seq_batch(&s, &o, hello, 2, 1);
    float *logits = (float *)malloc(sizeof(float) * 49152 + 16);
    memcpy((char *)raw + 4, &b, sizeof b);
    EXPECT_ERR(prge_forward(m, NULL, MISALIGN(const prge_batch *, raw, 4), logits, 49152), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    prge_batch bad = b;
    memcpy((char *)raw + 2, &o, sizeof o);
    bad.outputs = MISALIGN(const prge_seq_pos *, raw, 2);
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 49152), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    bad = b;
    bad.n_outputs = SIZE_MAX;
    EXPECT_FAIL(prge_forward(m, NULL, &bad, logits, 49152));
    bad.n_outputs = SIZE_MAX / 16 + 1;
    EXPECT_FAIL(prge_forward(m, NULL, &bad, logits, 49152));
    prge_seq ms = s;
    memcpy((char *)raw + 1, hello, sizeof hello);
    ms.tokens = MISALIGN(const int32_t *, raw, 1);
    bad = b;
    bad.seqs = &ms;
    EXPECT_ERR(prge_forward(m, NULL, &bad, logits, 49152), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    ms.tokens = hello;
    ms.n_tokens = SIZE_MAX;
    EXPECT_FAIL(prge_forward(m, NULL, &bad, logits, 49152));
    EXPECT_ERR(prge_forward(m, NULL, &b, logits, SIZE_MAX / 2), PRGE_ERR_INVALID_ARGUMENT, "");
    free(logits);

    /* Classify and generate. */
    static const char *const labels[] = {" great", " terrible"};
    float scores[4];
    memcpy((char *)raw + 4, labels, sizeof labels);
    EXPECT_ERR(prge_classify(m, NULL, "a", MISALIGN(const char *const *, raw, 4), 2, scores, NULL),
               PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_classify(m, NULL, "a", labels, 2, scores, MISALIGN(size_t *, raw, 1)), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    EXPECT_ERR(prge_classify(m, NULL, "a", labels, SIZE_MAX / 4, scores, NULL), PRGE_ERR_INVALID_ARGUMENT, "");
    EXPECT_ERR(prge_generate(m, NULL, "a", 1, buf, sizeof buf, MISALIGN(size_t *, raw, 5)), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    EXPECT_ERR(prge_generate(m, NULL, "a", 1, buf, SIZE_MAX, &len), PRGE_ERR_INVALID_ARGUMENT, "too large");
    EXPECT_ERR(prge_generate(m, NULL, "a", INT32_MIN, buf, sizeof buf, &len), PRGE_ERR_INVALID_ARGUMENT, "n_predict");

    /* Adapters. */
    EXPECT_ERR(prge_adapter_create(m, NULL, MISALIGN(prge_adapter **, raw, 4)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_adapter_load(m, "/nonexistent.gguf", MISALIGN(prge_adapter **, raw, 2)), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    prge_adapter *a = NULL;
    EXPECT_OK(prge_adapter_create(m, "{\"rank\": 1, \"layers\": [-1], \"targets\": [\"q\"]}", &a));
    EXPECT_ERR(prge_adapter_n_params(a, MISALIGN(size_t *, raw, 3)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    size_t np = 0;
    EXPECT_OK(prge_adapter_n_params(a, &np));
    CHECK(np == 576, "rank 1, q of the last layer: %zu params", np);

    /* Trainers. */
    EXPECT_ERR(prge_trainer_create(m, a, NULL, MISALIGN(prge_trainer **, raw, 4)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    prge_trainer *t = NULL;
    EXPECT_OK(prge_trainer_create(m, a, "{\"q\": 1, \"batch\": 1, \"eval_every\": 0}", &t));
    static const char line[] = "{\"sentence\": \"fine\", \"label\": 1}\n";
    EXPECT_ERR(prge_trainer_add_jsonl(t, 0, line, strlen(line), MISALIGN(size_t *, raw, 2)), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    EXPECT_ERR(prge_trainer_add_jsonl(t, -1, line, strlen(line), NULL), PRGE_ERR_INVALID_ARGUMENT, "split -1");
    EXPECT_ERR(prge_trainer_add_jsonl(t, INT32_MAX, line, strlen(line), NULL), PRGE_ERR_INVALID_ARGUMENT, "split");
    EXPECT_ERR(prge_trainer_add_jsonl(t, 0, line, SIZE_MAX / 2, NULL), PRGE_ERR_INVALID_ARGUMENT, "");
    EXPECT_ERR(prge_trainer_step(t, line, strlen(line), MISALIGN(float *, raw, 1), 2, NULL), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    EXPECT_ERR(prge_trainer_step(t, line, strlen(line), (float *)(void *)raw, SIZE_MAX, NULL), PRGE_ERR_INVALID_ARGUMENT,
               "too large");
    EXPECT_ERR(prge_trainer_step(t, line, strlen(line), NULL, 0, MISALIGN(size_t *, raw, 4)), PRGE_ERR_INVALID_ARGUMENT,
               "aligned");
    size_t n = 0;
    EXPECT_ERR(prge_trainer_evaluate(t, 1, NULL, NULL, &n), PRGE_ERR_STATE, "");
    EXPECT_OK(prge_trainer_add_jsonl(t, 1, line, strlen(line), &n));
    EXPECT_ERR(prge_trainer_evaluate(t, 1, NULL, MISALIGN(float *, raw, 2), NULL), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_trainer_evaluate(t, 1, NULL, NULL, MISALIGN(size_t *, raw, 4)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_trainer_evaluate(t, -1, NULL, NULL, &n), PRGE_ERR_INVALID_ARGUMENT, "split -1");
    EXPECT_ERR(prge_trainer_get_adapter(t, 0, MISALIGN(prge_adapter **, raw, 1)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_trainer_get_adapter(t, -1, &a), PRGE_ERR_INVALID_ARGUMENT, "which -1");
    EXPECT_ERR(prge_trainer_n_steps(t, MISALIGN(uint64_t *, raw, 4)), PRGE_ERR_INVALID_ARGUMENT, "aligned");
    EXPECT_ERR(prge_trainer_train(t, 1, 0, NULL, NULL), PRGE_ERR_STATE, "");   /* empty training set */
    EXPECT_ERR(prge_trainer_train(t, 0, -0.0, NULL, NULL), PRGE_ERR_INVALID_ARGUMENT, "");
    EXPECT_ERR(prge_trainer_train(t, 0, 1e-320, NULL, NULL), PRGE_ERR_STATE, ""); /* a valid budget, still no data */
    EXPECT_ERR(prge_trainer_save_checkpoint(t, ""), PRGE_ERR_INVALID_ARGUMENT, "empty");
    EXPECT_OK(prge_trainer_free(t));
    EXPECT_OK(prge_adapter_free(a));

    CHECK(strcmp(prge_status_string(INT32_MIN), "unknown status") == 0, "INT32_MIN");
    CHECK(strcmp(prge_status_string(INT32_MAX), "unknown status") == 0, "INT32_MAX");
}

/* ---- malformed UTF-8 of every kind, everywhere text goes in ----------------------------------- */

static void test_utf8(prge_model *m) {
    static const char *const bad[] = {
        "\x80",                 /* lone continuation byte       */
        "a\xc3",                /* truncated 2-byte sequence    */
        "\xc0\x80",             /* overlong NUL                 */
        "\xe0\x80\xaf",         /* overlong '/'                 */
        "\xed\xa0\x80",         /* UTF-16 surrogate U+D800      */
        "\xf4\x90\x80\x80",     /* above U+10FFFF               */
        "\xf8\x88\x80\x80\x80", /* 5-byte form                  */
        "\xfe\xff",             /* never valid                  */
    };
    int32_t ids[8];
    size_t n;
    char buf[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = bad[i];
        EXPECT_ERR(prge_tokenize(m, s, strlen(s), 1, 1, ids, 8, &n), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
        EXPECT_ERR(prge_model_meta_str(m, s, buf, sizeof buf, &n), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
        EXPECT_ERR(prge_generate(m, NULL, s, 1, buf, sizeof buf, &n), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
        const char *labels[2] = {" great", s};
        float scores[2];
        EXPECT_ERR(prge_classify(m, NULL, "It was", labels, 2, scores, NULL), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
        prge_adapter *a = NULL;
        EXPECT_ERR(prge_adapter_create(m, s, &a), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
        prge_trainer *t = NULL;
        EXPECT_ERR(prge_trainer_create(m, NULL, s, &t), PRGE_ERR_INVALID_ARGUMENT, "UTF-8");
    }
    /* Valid UTF-8 with a NUL in the middle: fine for tokenize (a length is given). */
    EXPECT_OK(prge_tokenize(m, "a\0b", 3, 0, 0, ids, 8, &n));
    CHECK(n >= 2, "\"a\\0b\" gave %zu ids", n);
}

/* ---- hostile JSON ---------------------------------------------------------------------------- */

static void test_hostile_json(prge_model *m) {
    /* 100000 nested arrays: json-c's depth limit (32), not a stack overflow. */
    size_t depth = 100000;
    char *deep = (char *)malloc(2 * depth + 32);
    size_t at = (size_t)sprintf(deep, "{\"layers\": ");
    memset(deep + at, '[', depth);
    memset(deep + at + depth, ']', depth);
    strcpy(deep + at + 2 * depth, "}");
    prge_adapter *a = (prge_adapter *)(uintptr_t)1;
    EXPECT_ERR(prge_adapter_create(m, deep, &a), PRGE_ERR_FORMAT, "JSON syntax error");
    CHECK(a == NULL, "*out must be NULL");
    prge_trainer *t = NULL;
    EXPECT_ERR(prge_trainer_create(m, NULL, deep, &t), PRGE_ERR_FORMAT, "JSON syntax error");
    free(deep);

    static const struct { const char *json; const char *needle; } bad[] = {
        {"{\"rank\": 1e308}", "$.rank"},
        {"{\"rank\": 1e999}", "not finite"},
        {"{\"rank\": -0}", "$.rank"},
        {"{\"rank\": 9007199254740993}", "2^53"},
        {"{\"rank\": 18446744073709551616}", "$.rank"},
        {"{\"seed\": 1e300}", "$.seed"},
        {"{\"seed\": 0.5}", "$.seed"},
        {"{\"alpha\": 1e39}", "Float range"},
        {"{\"alpha\": NaN}", "json_options"},
        {"{\"layers\": [-4097]}", "$.layers[0]"},
        {"{\"layers\": [4096]}", "$.layers[0]"},
        {"{\"layers\": [-31]}", "layer -31"},
        {"{\"layers\": [29, -1]}", "duplicate layer"},
        {"{\"targets\": [\"q\\u0000\"]}", "unknown target"},
        {"{\"rank\": 4, \"rank\": \"x\"}", "$.rank"},
        {"", ""}, /* placeholder: the empty string means defaults, checked below */
    };
    for (size_t i = 0; i + 1 < sizeof bad / sizeof bad[0]; i++) {
        a = (prge_adapter *)(uintptr_t)1;
        EXPECT_FAIL(prge_adapter_create(m, bad[i].json, &a));
        CHECK(strstr(prge_last_error(), bad[i].needle) != NULL, "%s: \"%s\" should contain \"%s\"", bad[i].json,
              prge_last_error(), bad[i].needle);
        CHECK(a == NULL, "*out must be NULL (%s)", bad[i].json);
    }
    /* Negative layers count from the top, as the recipe's default does: [-1] is layer 29. */
    a = NULL;
    EXPECT_OK(prge_adapter_create(m, "{\"rank\": 1, \"targets\": [\"q\"], \"layers\": [-1]}", &a));
    EXPECT_OK(prge_adapter_free(a));

    static const char *const bad_config[] = {
        "{\"q\": 1e308}", "{\"batch\": -1}", "{\"eps\": 0}", "{\"lr\": -1}", "{\"lr\": 1e39}",
        "{\"steps\": 1e20}", "{\"minutes\": -1}", "{\"minutes\": 1e999}", "{\"threads\": 100000}",
        "{\"max_length\": 1}", "{\"max_length\": 1e12}", "{\"eval_limit\": 0}", "{\"seed\": -1}",
        "{\"task\": {\"template\": \"{\", \"labels\": [\" a\"]}}", "{\"task\": {\"template\": \"{x}\", \"labels\": []}}",
        "{\"task\": 7}", "{\"adapter\": []}", "{\"checkpoint\": \"\"}", "[]", "null", "1", "\"sst2\"",
    };
    for (size_t i = 0; i < sizeof bad_config / sizeof bad_config[0]; i++) {
        t = (prge_trainer *)(uintptr_t)1;
        EXPECT_FAIL(prge_trainer_create(m, NULL, bad_config[i], &t));
        CHECK(t == NULL, "*out must be NULL (%s)", bad_config[i]);
    }

    /* JSONL lines: deep nesting, NUL bytes, lone surrogate escapes, huge lines. */
    EXPECT_OK(prge_trainer_create(m, NULL, "{\"q\": 1, \"adapter\": {\"rank\": 1, \"layers\": [-1]}}", &t));
    if (t) {
        size_t n = 99;
        static const char nul_line[] = "{\"sentence\": \"a\", \"label\": 1}\0\n";
        EXPECT_ERR(prge_trainer_add_jsonl(t, 0, nul_line, sizeof nul_line - 1, &n), PRGE_ERR_FORMAT, "jsonl:1");
        static const char surrogate[] = "{\"sentence\": \"\\ud800\", \"label\": 1}\n";
        prge_status s = prge_trainer_add_jsonl(t, 0, surrogate, strlen(surrogate), &n);
        CHECK(s == PRGE_OK || s == PRGE_ERR_FORMAT, "lone surrogate escape: %d %s", s, prge_last_error());
        char *deep_line = (char *)malloc(2 * depth + 64);
        at = (size_t)sprintf(deep_line, "{\"sentence\": ");
        memset(deep_line + at, '[', depth);
        memset(deep_line + at + depth, ']', depth);
        strcpy(deep_line + at + 2 * depth, ", \"label\": 1}\n");
        EXPECT_ERR(prge_trainer_add_jsonl(t, 0, deep_line, strlen(deep_line), &n), PRGE_ERR_FORMAT, "jsonl:1");
        free(deep_line);
        /* 200000 blank and whitespace-only lines: nothing added, no error. */
        size_t blank = 200000;
        char *blanks = (char *)malloc(3 * blank);
        for (size_t i = 0; i < blank; i++) memcpy(blanks + 3 * i, i % 2 ? " \r\n" : "\t\t\n", 3);
        EXPECT_OK(prge_trainer_add_jsonl(t, 0, blanks, 3 * blank, &n));
        CHECK(n == 0, "blank lines added %zu", n);
        free(blanks);
        EXPECT_OK(prge_trainer_free(t));
    }
}

/* ---- threads ------------------------------------------------------------------------------- */

struct user { prge_model *m; volatile int *stop; int bad; int calls; };

/* Calls on a model that another thread frees meanwhile: OK until the free, then "not live". */
static void *use_until_freed(void *arg) {
    struct user *u = (struct user *)arg;
    static const int32_t hello[] = {19556, 905};
    int dead = 0;
    while (!*u->stop || !dead) {
        char buf[64];
        size_t len = 0, v = 0;
        int32_t ids[8];
        prge_status s1 = prge_detokenize(u->m, hello, 2, buf, sizeof buf, &len);
        prge_status s2 = prge_tokenize(u->m, "Hello world", 11, 0, 0, ids, 8, &len);
        prge_status s3 = prge_model_n_vocab(u->m, &v);
        u->calls++;
        prge_status all[3] = {s1, s2, s3};
        for (int i = 0; i < 3; i++) {
            if (all[i] == PRGE_OK) {
                if (dead) u->bad++; /* ids are never reused: once gone, gone */
            } else if (all[i] == PRGE_ERR_INVALID_ARGUMENT && strstr(prge_last_error(), "not live")) {
                dead = 1;
            } else {
                u->bad++;
            }
        }
        if (*u->stop && u->calls > 100000) break; /* the free never showed: counted below */
    }
    if (!dead) u->bad++;
    return NULL;
}

struct churn { prge_model *m; int bad; };

/* Adapters created and freed from many threads; each handle freed exactly once. */
static void *adapter_churn(void *arg) {
    struct churn *c = (struct churn *)arg;
    for (int i = 0; i < 50; i++) {
        prge_adapter *a = NULL;
        if (prge_adapter_create(c->m, "{\"rank\": 1, \"layers\": [-1], \"targets\": [\"q\"]}", &a) != PRGE_OK || !a) {
            c->bad++;
            continue;
        }
        size_t n = 0;
        if (prge_adapter_n_params(a, &n) != PRGE_OK || n != 576) c->bad++;
        if (prge_adapter_free(a) != PRGE_OK) c->bad++;
        if (prge_adapter_free(a) != PRGE_ERR_INVALID_ARGUMENT) c->bad++;
    }
    return NULL;
}

struct racer { prge_adapter *a; prge_status s; };

static void *free_adapter(void *arg) {
    struct racer *r = (struct racer *)arg;
    r->s = prge_adapter_free(r->a);
    return NULL;
}

struct stepper { prge_trainer *t; int ok, busy, other; };

static const char step_jsonl[] = "{\"sentence\": \"a warm , funny film . \", \"label\": 1}\n";

static void *step_loop(void *arg) {
    struct stepper *s = (struct stepper *)arg;
    for (int i = 0; i < 3; i++) {
        prge_status st = prge_trainer_step(s->t, step_jsonl, strlen(step_jsonl), NULL, 0, NULL);
        if (st == PRGE_OK) s->ok++;
        else if (st == PRGE_ERR_STATE && strstr(prge_last_error(), "busy")) s->busy++;
        else s->other++;
    }
    return NULL;
}

static void test_threads(prge_model *m) {
    /* A second load of the model, freed while three threads use it. */
    prge_model *m2 = NULL;
    EXPECT_OK(prge_model_load(model_path, NULL, &m2));
    volatile int stop = 0;
    struct user u[3];
    pthread_t th[8];
    for (int i = 0; i < 3; i++) {
        u[i].m = m2;
        u[i].stop = &stop;
        u[i].bad = 0;
        u[i].calls = 0;
        CHECK(pthread_create(&th[i], NULL, use_until_freed, &u[i]) == 0, "pthread_create");
    }
    sleep_ms(200);
    EXPECT_OK(prge_model_free(m2));
    stop = 1;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        CHECK(u[i].bad == 0 && u[i].calls > 0, "user %d: %d bad results in %d calls", i, u[i].bad, u[i].calls);
    }

    /* Handle churn from 8 threads. */
    struct churn c[8];
    for (int i = 0; i < 8; i++) {
        c[i].m = m;
        c[i].bad = 0;
        CHECK(pthread_create(&th[i], NULL, adapter_churn, &c[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK(c[i].bad == 0, "churn thread %d: %d bad results", i, c[i].bad);
    }

    /* Two threads free one handle: exactly one succeeds. */
    for (int round = 0; round < 20; round++) {
        prge_adapter *a = NULL;
        EXPECT_OK(prge_adapter_create(m, "{\"rank\": 1, \"layers\": [-1], \"targets\": [\"q\"]}", &a));
        struct racer r[2] = {{a, -1}, {a, -1}};
        pthread_create(&th[0], NULL, free_adapter, &r[0]);
        pthread_create(&th[1], NULL, free_adapter, &r[1]);
        pthread_join(th[0], NULL);
        pthread_join(th[1], NULL);
        CHECK((r[0].s == PRGE_OK) + (r[1].s == PRGE_OK) == 1 &&
                  (r[0].s == PRGE_ERR_INVALID_ARGUMENT) + (r[1].s == PRGE_ERR_INVALID_ARGUMENT) == 1,
              "double free race: %d %d", r[0].s, r[1].s);
    }

    /* Two threads step one trainer: each call either runs or fails at once as busy. */
    prge_trainer *t = NULL;
    EXPECT_OK(prge_trainer_create(m, NULL,
                                  "{\"q\": 1, \"batch\": 1, \"eval_every\": 0, \"max_length\": 32,"
                                  " \"adapter\": {\"rank\": 1, \"layers\": [-1], \"targets\": [\"q\"]}}",
                                  &t));
    if (t) {
        struct stepper s[2] = {{t, 0, 0, 0}, {t, 0, 0, 0}};
        pthread_create(&th[0], NULL, step_loop, &s[0]);
        pthread_create(&th[1], NULL, step_loop, &s[1]);
        uint64_t steps = 0;
        for (int i = 0; i < 50; i++) {
            if (prge_trainer_n_steps(t, &steps) != PRGE_OK) s[0].other++;
            sleep_ms(1);
        }
        pthread_join(th[0], NULL);
        pthread_join(th[1], NULL);
        EXPECT_OK(prge_trainer_n_steps(t, &steps));
        CHECK(s[0].other == 0 && s[1].other == 0 && steps == (uint64_t)(s[0].ok + s[1].ok) && s[0].ok + s[1].ok >= 1,
              "steppers: ok %d/%d busy %d/%d other %d/%d, steps %llu", s[0].ok, s[1].ok, s[0].busy, s[1].busy,
              s[0].other, s[1].other, (unsigned long long)steps);
        EXPECT_OK(prge_trainer_free(t));
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_hostile_files();
    prge_model *m = NULL;
    EXPECT_OK(prge_model_load(model_path, NULL, &m));
    if (!m) {
        printf("cannot load %s: %s\n%d passed, %d failed\n", model_path, prge_last_error(), passed, failed + 1);
        return 1;
    }
    test_long_prompt(m);
    test_alignment_and_sizes(m);
    test_utf8(m);
    test_hostile_json(m);
    test_threads(m);
    EXPECT_OK(prge_model_free(m));
    rmdir(tmpdir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
