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

    prge_model_params p;
    prge_model_default_params(&p);
    p.n_threads = 1;
    p.numeric_mode = PRGE_NUMERIC_BF16;
    prge_model *m2 = NULL;
    EXPECT_OK(prge_model_load(model_path, &p, &m2));
    CHECK(m2 != NULL && m2 != m, "second handle");
    EXPECT_OK(prge_model_free(m2));

    test_bad_handle(NULL, "NULL");
    test_bad_handle((prge_model *)(uintptr_t)0xdead0, "not live");
    EXPECT_OK(prge_model_free(m));
    test_bad_handle(m, "not live");
    EXPECT_ERR(prge_model_free(m), PRGE_ERR_INVALID_ARGUMENT, "not live");
    EXPECT_OK(prge_model_free(NULL));

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
