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
    PRGE_NUMERIC_BF16 = 1, /* bf16 products, fp32 accumulation (fast on AVX-512 BF16 CPUs; */
                           /* elsewhere emulated in portable C, ~10x slower)            */
    PRGE_NUMERIC_INT8 = 2  /* Q4 weights x activations quantized to int8 per 32 values,   */
                           /* exact int32 block sums (AVX-512 VNNI); the rest bf16/fp32 */
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


/* ---- Adapters ---------------------------------------------------------------------------- */

/* A LoRA-FA adapter for one model: per adapted projection W (d_out x d_in) a frozen random
 * A (r x d_in) and a trained B (d_out x r); inference computes W x + (alpha/r) B A x.
 * Saved and loaded as GGUF in llama.cpp's LoRA adapter layout. */
typedef struct prge_adapter prge_adapter;

/* Creates a fresh adapter for `model` (B = 0, A from the seed). `json_options` (NULL or "" for
 * the defaults: the training recipe's adapter) is a JSON object with any of:
 *   {"rank": 2, "alpha": 11.3137 (8·√2), "targets": ["q","k","v","o","gate","up","down"],
 *    "layers": [int, ...] (default [-15, ..., -1]: the top 15; negative indices count from
 *    the last layer; null: all layers), "seed": 0,
 *    "a_scale": {"v": 0.5, ...} (multiplies A's init bound per target, default 1: a tensor's
 *    zero-order step then moves its output s^2 as much as the others'; replaces the whole map)}
 * Targets may also be given by their GGUF names ("attn_q", ..., "ffn_down"). Malformed JSON,
 * unknown keys and wrong types give PRGE_ERR_FORMAT, a layer the model lacks
 * PRGE_ERR_INVALID_ARGUMENT; messages name the JSON path ("json_options: $.rank: ...").
 * On success *out owns a new handle (free with prge_adapter_free). The adapter keeps what it
 * needs of the model alive, so the two may be freed in any order. */
prge_status prge_adapter_create(const prge_model *model, const char *json_options,
                                prge_adapter **out);

/* Loads an adapter GGUF (prge's own, or one made by llama.cpp's converter / PEFT) and checks
 * it fits `model`. On success *out owns a new handle. */
prge_status prge_adapter_load(const prge_model *model, const char *path, prge_adapter **out);

/* Writes the adapter atomically (temp file, fsync, rename, fsync of the directory): a crash
 * leaves either the old file or the new one. */
prge_status prge_adapter_save(const prge_adapter *adapter, const char *path);

/* Number of trained parameters (elements of all B matrices). */
prge_status prge_adapter_n_params(const prge_adapter *adapter, size_t *out);

/* Releases an adapter handle (NULL is a no-op). A trainer that uses it keeps its own copy. */
prge_status prge_adapter_free(prge_adapter *adapter);

/* ---- Forward ----------------------------------------------------------------------------- */

/* One sequence of a batch: `n_tokens` ids, each in [0, n_vocab), at positions 0..n_tokens-1. */
typedef struct prge_seq {
    const int32_t *tokens;
    size_t n_tokens;
} prge_seq;

/* A position whose logits are wanted: token `pos` of sequence `seq`. */
typedef struct prge_seq_pos {
    size_t seq;
    size_t pos;
} prge_seq_pos;

/* Sequences of different lengths run together (no padding work); logits are computed only at
 * the listed outputs. All arrays are caller-owned and read during the call only. */
typedef struct prge_batch {
    const prge_seq *seqs;
    size_t n_seqs;
    const prge_seq_pos *outputs;
    size_t n_outputs;
} prge_batch;

/* Runs one forward pass over `batch`, with `adapter` applied (NULL: the base model), and
 * writes for each output in order its n_vocab logits into the caller's `logits` (row-major,
 * n_outputs x n_vocab floats; `logits_cap` is its room in floats). Too small:
 * PRGE_ERR_BUFFER_TOO_SMALL and nothing written. At least one sequence and one output are
 * needed, each sequence 1..n_ctx_train tokens. A batch whose scratch memory would exceed half
 * the machine's physical memory gives PRGE_ERR_OUT_OF_MEMORY before anything is allocated.
 * Calls on the same model (forward, generate, classify) run one at a time. */
prge_status prge_forward(prge_model *model, const prge_adapter *adapter,
                         const prge_batch *batch, float *logits, size_t logits_cap);

/* ---- Generation and classification -------------------------------------------------------- */

/* Greedy generation (KV cache): continues `prompt` (UTF-8, NUL-terminated, tokenized with BOS
 * as the model's metadata says and without special-token parsing) by at most `n_predict` (>= 0)
 * tokens, stopping early at EOS or an end-of-turn token, or at the end of the context. The
 * generated text only (not the prompt) is a text output as described above; control tokens add
 * no text, and a character cut off by n_predict becomes U+FFFD. A length query (buf = NULL)
 * runs the generation too. adapter may be NULL. */
prge_status prge_generate(prge_model *model, const prge_adapter *adapter, const char *prompt,
                          int32_t n_predict, char *buf, size_t buf_size, size_t *len_out);

/* Scores `n_labels` (>= 1) label words (UTF-8, NUL-terminated, each must be one token when
 * tokenized alone without BOS, e.g. " great") as continuations of `prompt` (tokenized as in
 * prge_generate): writes their log-probabilities (full-vocabulary log-softmax at the last
 * prompt position) into the caller's `scores` (n_labels floats) and the index of the best one
 * into *best (may be NULL; the first on ties). One forward pass. adapter may be NULL. */
prge_status prge_classify(prge_model *model, const prge_adapter *adapter, const char *prompt,
                          const char *const *labels, size_t n_labels, float *scores,
                          size_t *best);

/* ---- Training (P-RGE) -------------------------------------------------------------------- */

/* A trainer owns a copy of an adapter and fine-tunes its B matrices by zeroth-order steps.
 * It has its own thread pool and scratch memory ("threads": default the model's n_threads),
 * so prge_forward / classify / generate on the same model keep working while it trains.
 * A trainer runs one call at a time: a call on a trainer that is busy in another call (another
 * thread's prge_trainer_train, or its own progress callback) fails at once with
 * PRGE_ERR_STATE; prge_trainer_n_steps and prge_trainer_free may be called any time.
 * It is configured by JSON (all keys optional; unknown keys are errors):
 *   {"task": "sst2" | {"template": "{sentence} It was", "labels": [" terrible", " great"],
 *                      "text_fields": ["sentence"], "label_field": "label"} | "prompt_response",
 *    "estimator": "prge" | "rge" | "mezo",   "q": 4, "batch": 4, "eps": 1e-2, "lr": ...,
 *    "schedule": "constant" | "linear" | "cosine", "lr_min": 0.1, "lr_horizon": 2000 | null,
 *    "loss": "full" | "candidates",
 *    "steps": N, "minutes": M, "eval_every": N, "eval_limit": N | null, "seed": S,
 *    "numeric_mode": "fp32" | "bf16" | "int8", "threads": N, "adapter": {adapter options},
 *    "checkpoint": "path.gguf", "log": "path.jsonl"}
 * The schedule multiplies lr by lr_min + (1 − lr_min)·f(t), f = 1, 1 − t or ½(1 + cos πt), with t
 * the fraction of "steps" (or of the run's budget) done, and at least step / lr_horizon: the
 * decay is over by step lr_horizon however long the run.
 * "eval_limit": N evaluates on N dev examples spread over the set (a fixed subset, the same
 * for every seed), not the first N: dev files are often sorted by label; null: all of it.
 * Also "max_length": N (prompt tokens; longer prompts lose their beginning) and
 * "step_log": "path.bin" (the replayable per-step record), and "guide": {"lr_ratio": R,
 * "eps": E} | null: after the 2q copies, one ± pair along the guide (the loss's derivative at
 * the last hidden state, sent to each adapted block through the residual stream and back
 * through the block's own MLP and last-token attention to all seven projections; prge
 * estimator, classification, candidates loss; docs/ARCHITECTURE.md), stepped R × lr along
 * it; a guided run has no step log (its directions come from activations, not the RNG), and
 * its step reports the 2q random losses (the pair's are in the training log). The command line's members
 * ("model", "train", "dev", "out", "dev_split") are accepted and ignored here.
 * Defaults are the library's recipe (docs/RECIPE.md), with the task's own override where it
 * has one (trec: lr 2e-2); the config's keys come after both. Malformed JSON, unknown keys and wrong
 * types give PRGE_ERR_FORMAT with the JSON path ("json_config: $.adapter.rank: ..."). */
typedef struct prge_trainer prge_trainer;

/* Creates a trainer for `model`. `adapter` (may be NULL: a fresh one from the config's
 * "adapter" options) is copied, so the caller may free it. json_config NULL or "" gives the
 * defaults. *out owns a new handle (NULL on failure); the trainer keeps the model alive. */
prge_status prge_trainer_create(prge_model *model, const prge_adapter *adapter,
                                const char *json_config, prge_trainer **out);

prge_status prge_trainer_free(prge_trainer *trainer);

/* One user example. For classification tasks `text` is a JSON object with the task's fields
 * (e.g. {"sentence": "...", "label": 1}); for "prompt_response" {"prompt": ..., "response": ...}.
 * Equivalent to one line of the task's JSONL. */

/* Appends examples to the training set (split = 0) or the dev set (split = 1) from JSONL text
 * (`len` bytes of UTF-8, one JSON object per line; blank lines and CRLF are fine). All or
 * nothing: a malformed line is an error naming its line ("jsonl:3: ...") and nothing is added.
 * *n_added (may be NULL) receives the count. */
enum { PRGE_SPLIT_TRAIN = 0, PRGE_SPLIT_DEV = 1 };
prge_status prge_trainer_add_jsonl(prge_trainer *trainer, int32_t split, const char *jsonl,
                                   size_t len, size_t *n_added);

/* The P-RGE step itself, on the given examples (JSONL text as above, not added to any set):
 * builds the 2q perturbed copies, runs ONE forward over all of them, updates B.
 * Writes the 2q losses (L+_1..L+_q, L-_1..L-_q) into `losses` (room for `losses_cap`
 * floats; pass NULL, 0 to skip) and the number written to *n_losses (may be NULL).
 * A losses_cap in 1..2q-1 gives PRGE_ERR_BUFFER_TOO_SMALL with *n_losses = 2q, and no step. */
prge_status prge_trainer_step(prge_trainer *trainer, const char *jsonl, size_t len,
                              float *losses, size_t losses_cap, size_t *n_losses);

/* Progress of a training run, passed to the callback after every step. */
typedef struct prge_progress {
    uint64_t step;           /* steps done so far (all runs of this trainer)           */
    uint64_t total_steps;    /* planned total, 0 if bounded by time only               */
    double elapsed_s;        /* seconds since this run started                         */
    double eta_s;            /* estimated seconds left, < 0 if unknown                 */
    float train_loss;        /* mean of the step's 2q losses                           */
    int32_t evaluated;       /* 1 if a dev evaluation ran after this step              */
    float dev_loss;          /* valid when evaluated                                   */
    float dev_accuracy;      /* valid when evaluated (classification; NaN otherwise)   */
    float best_dev_accuracy; /* best so far (NaN before the first evaluation)          */
} prge_progress;

/* Called after each step, synchronously, on the thread that called prge_trainer_train (the
 * training thread): training waits for it to return. `progress` is valid during the call only.
 * It may call any prge function except those on the same trainer (they fail with
 * PRGE_ERR_STATE; prge_trainer_n_steps works). Return non-zero to stop the run (the run then
 * returns PRGE_ERR_CANCELLED after finishing that step). */
typedef int (*prge_progress_fn)(const prge_progress *progress, void *user_data);

/* Trains on the training set until `max_steps` more steps (0: no step limit) or
 * `max_seconds` (0: no time limit; otherwise finite and > 0) -- at least one must be set --
 * evaluating on the dev set as the config says (and once at the end) and keeping the best
 * adapter. An empty training set gives PRGE_ERR_STATE. `callback` may be NULL. */
prge_status prge_trainer_train(prge_trainer *trainer, uint64_t max_steps, double max_seconds,
                               prge_progress_fn callback, void *user_data);

/* Evaluates the current adapter on the dev set (split = 1) or the training set (split = 0):
 * accuracy by the best label word (NaN for "prompt_response"), mean loss, number of examples.
 * Each output may be NULL. An empty set gives PRGE_ERR_STATE. */
prge_status prge_trainer_evaluate(prge_trainer *trainer, int32_t split, float *accuracy,
                                  float *loss, size_t *n);

/* Copies the trainer's current adapter (which = 0) or the best one by dev loss
 * (which = 1; the current one if no evaluation ran) into a new adapter handle *out. */
enum { PRGE_ADAPTER_CURRENT = 0, PRGE_ADAPTER_BEST = 1 };
prge_status prge_trainer_get_adapter(prge_trainer *trainer, int32_t which, prge_adapter **out);

/* Checkpoint (adapter + step + best adapter + config, atomically written) and resume: a
 * trainer resumed from a checkpoint continues bit-for-bit as if it had not stopped. Resuming
 * needs the same trajectory settings and the same training set (add it first); a mismatch is
 * refused with PRGE_ERR_STATE. */
prge_status prge_trainer_save_checkpoint(prge_trainer *trainer, const char *path);
prge_status prge_trainer_load_checkpoint(prge_trainer *trainer, const char *path);

/* Steps done so far. */
prge_status prge_trainer_n_steps(const prge_trainer *trainer, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PRGE_H */
