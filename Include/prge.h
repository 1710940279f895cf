/*
 * prge.h: the C interface of libprge, on-device LoRA fine-tuning of quantized GGUF language
 * models by P-RGE (zeroth-order, forward passes only). Plain C11, stdint/stddef only; usable
 * from C++ unchanged.
 *
 * Conventions (they hold for every function below):
 * - Every function that can fail returns a prge_status. On failure, prge_last_error() gives a
 *   message for the calling thread, and no output argument has been written unless its
 *   description says otherwise.
 * - Handles (prge_model, ...) are opaque tokens, not addresses: the library never dereferences
 *   them. Every call looks its handle up in a registry, and ids are never reused, so NULL, a
 *   freed handle, a handle of another type, or any value the library did not hand out is
 *   reported as PRGE_ERR_INVALID_ARGUMENT. Freeing a handle while another thread is inside a
 *   call on it is safe: that call finishes first on the still-alive object.
 *   What the library cannot detect: buffers shorter than the size you pass with them, and
 *   pointers (other than handles) to freed or unmapped memory. Those are your contract.
 * - Buffers are owned by the caller. Sizes are checked before anything is written; a buffer
 *   that is too small gives PRGE_ERR_BUFFER_TOO_SMALL and the size that is needed.
 *   Typed buffers must be aligned for their type (a misaligned one is an error, not a crash).
 * - Strings in are UTF-8 (checked); strings out are UTF-8 and NUL-terminated.
 * - Thread safety: functions taking a const handle may run concurrently on the same handle;
 *   prge_forward calls on the same model are serialized by the library.
 */
#ifndef PRGE_H
#define PRGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Version ---------------------------------------------------------------------------- */

/* Bumped on every incompatible change of this header (the soname is libprge.so.<version>). */
#define PRGE_ABI_VERSION 1

/* The PRGE_ABI_VERSION the loaded library was built with; compare it with the macro. */
int32_t prge_abi_version(void);

/* ---- Status and errors ------------------------------------------------------------------- */

typedef int32_t prge_status;
enum {
    PRGE_OK = 0,
    PRGE_ERR_INVALID_ARGUMENT = 1, /* NULL, bad handle, wrong size, out-of-range value     */
    PRGE_ERR_IO = 2,               /* open/read/write/fsync/rename failed                 */
    PRGE_ERR_FORMAT = 3,           /* a file's bytes are malformed (GGUF, JSON, JSONL)    */
    PRGE_ERR_UNSUPPORTED = 4,      /* valid but not implemented (architecture, type, ...) */
    PRGE_ERR_OUT_OF_MEMORY = 5,    /* an allocation or a size limit was refused           */
    PRGE_ERR_BUFFER_TOO_SMALL = 6, /* a caller-owned output buffer is too small           */
    PRGE_ERR_STATE = 7,            /* call not valid in the object's current state        */
    PRGE_ERR_CANCELLED = 8,        /* a progress callback asked to stop                   */
    PRGE_ERR_INTERNAL = 9          /* a bug in prge; please report it                     */
};

/* The message of the most recent failed call on this thread ("" if none has failed).
 * Never NULL. Owned by the library; valid until the next failing call on this thread. */
const char *prge_last_error(void);

/* A short static name for a status ("ok", "invalid argument", ...; "unknown status" for
 * values not listed above). Never NULL; owned by the library, valid forever. */
const char *prge_status_string(prge_status status);

/* ---- Model ------------------------------------------------------------------------------- */

/* A loaded model: the memory-mapped GGUF file, its hyper-parameters and tokenizer. */
typedef struct prge_model prge_model;

typedef int32_t prge_numeric_mode;
enum {
    PRGE_NUMERIC_FP32 = 0, /* fp32 activations and accumulation: the reference            */
    PRGE_NUMERIC_BF16 = 1  /* bf16 products, fp32 accumulation (AVX-512 BF16 CPUs)        */
};

typedef struct prge_model_params {
    int32_t n_threads;              /* threads for forward passes; 0 = all online cores  */
    prge_numeric_mode numeric_mode; /* how the linear layers multiply                    */
} prge_model_params;

/* Writes the defaults (all cores, PRGE_NUMERIC_FP32) into *out (caller-owned). */
prge_status prge_model_default_params(prge_model_params *out);

/* Loads the GGUF model at `path` (memory-mapped; the file must stay in place while loaded).
 * `params` may be NULL for the defaults; it is read during the call only.
 * On success *out receives a new handle, owned by the caller: release it with prge_model_free.
 * On failure *out is set to NULL. */
prge_status prge_model_load(const char *path, const prge_model_params *params, prge_model **out);

/* Releases a model handle (NULL is a no-op). The handle is invalid afterwards; passing it
 * again gives PRGE_ERR_INVALID_ARGUMENT. */
prge_status prge_model_free(prge_model *model);

/* Hyper-parameters; each writes one value into the caller's *out. */
prge_status prge_model_n_vocab(const prge_model *model, size_t *out);
prge_status prge_model_n_ctx_train(const prge_model *model, size_t *out);
prge_status prge_model_n_layer(const prge_model *model, size_t *out);
prge_status prge_model_n_embd(const prge_model *model, size_t *out);

/* Text outputs below write a NUL-terminated UTF-8 string into the caller's `buf` of
 * `buf_size` bytes and its length without the NUL into *len_out (len_out may be NULL).
 * If buf_size < length + 1 they return PRGE_ERR_BUFFER_TOO_SMALL, write nothing into buf and
 * still set *len_out, so buf = NULL, buf_size = 0 asks for the length. */

/* The architecture name from the GGUF metadata (e.g. "llama"). */
prge_status prge_model_architecture(const prge_model *model, char *buf, size_t buf_size,
                                    size_t *len_out);

/* Any scalar GGUF metadata value as text: strings as they are, integers in decimal, floats
 * in shortest round-trip form, booleans as "true"/"false". An absent key or an array value
 * gives PRGE_ERR_INVALID_ARGUMENT. `key` is a NUL-terminated UTF-8 string. */
prge_status prge_model_meta_str(const prge_model *model, const char *key, char *buf,
                                size_t buf_size, size_t *len_out);

/* ---- Tokens ------------------------------------------------------------------------------ */

/* Tokenizes `text_len` bytes of UTF-8 `text` (no NUL needed; text may be NULL if text_len
 * is 0). add_special != 0 adds BOS/EOS as the model's metadata says; parse_special != 0
 * turns special-token text such as "<|im_start|>" into its token instead of plain text.
 * The ids go to the caller's `out` (room for `cap` ids); *n_out receives the count. If cap is
 * too small: PRGE_ERR_BUFFER_TOO_SMALL, nothing written to out, *n_out = the count needed
 * (so out = NULL, cap = 0 asks for the count). */
prge_status prge_tokenize(const prge_model *model, const char *text, size_t text_len,
                          int add_special, int parse_special, int32_t *out, size_t cap,
                          size_t *n_out);

/* Turns `n_tokens` ids back into text (a text output as described above). Every id must be
 * in [0, n_vocab). */
prge_status prge_detokenize(const prge_model *model, const int32_t *tokens, size_t n_tokens,
                            char *buf, size_t buf_size, size_t *len_out);

#ifdef __cplusplus
}
#endif

#endif /* PRGE_H */
