"""The C interface of libprge, one to one (``Include/prge.h``).

Every function of the header is declared here with its ``argtypes`` and ``restype``, the C
prototype as a comment above it; structs mirror the header's field for field, and enum values
are module constants. Nothing here converts, checks or raises on a status: that is the job of
the Pythonic layer (:mod:`prge.model`, :mod:`prge.adapter`, :mod:`prge.trainer`). Handles are
opaque tokens, so they are ``c_void_p`` values (``None`` is NULL).

The library is found and loaded by :mod:`prge._loader` when this module is imported, and its
``prge_abi_version()`` must equal :data:`ABI_VERSION` (else :class:`prge.errors.LibraryError`).
A symbol the loaded library lacks becomes a function that raises that error when called.
"""

from __future__ import annotations

from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_float,
    c_int,
    c_int32,
    c_size_t,
    c_uint64,
    c_void_p,
)
from typing import Any, Callable, Dict, List, Optional

from . import _loader
from .errors import LibraryError

# ---- Version ------------------------------------------------------------------------------

#: The PRGE_ABI_VERSION of the header this binding was written against.
ABI_VERSION = 1

# ---- Status and errors --------------------------------------------------------------------

prge_status = c_int32
PRGE_OK = 0
PRGE_ERR_INVALID_ARGUMENT = 1
PRGE_ERR_IO = 2
PRGE_ERR_FORMAT = 3
PRGE_ERR_UNSUPPORTED = 4
PRGE_ERR_OUT_OF_MEMORY = 5
PRGE_ERR_BUFFER_TOO_SMALL = 6
PRGE_ERR_STATE = 7
PRGE_ERR_CANCELLED = 8
PRGE_ERR_INTERNAL = 9

# ---- Handles (opaque tokens; typedef struct prge_x prge_x) ---------------------------------

prge_model_p = c_void_p
prge_adapter_p = c_void_p
prge_trainer_p = c_void_p

# ---- Model ---------------------------------------------------------------------------------

prge_numeric_mode = c_int32
PRGE_NUMERIC_FP32 = 0
PRGE_NUMERIC_BF16 = 1
PRGE_NUMERIC_INT8 = 2


class prge_model_params(Structure):
    """``prge_model_params``: threads for forward passes (0 = all cores) and numeric mode."""

    _fields_ = [
        ("n_threads", c_int32),
        ("numeric_mode", prge_numeric_mode),
    ]


# ---- Forward -------------------------------------------------------------------------------


class prge_seq(Structure):
    """``prge_seq``: one sequence of a batch, ``n_tokens`` ids at positions 0..n_tokens-1."""

    _fields_ = [
        ("tokens", POINTER(c_int32)),
        ("n_tokens", c_size_t),
    ]


class prge_seq_pos(Structure):
    """``prge_seq_pos``: a position whose logits are wanted, token ``pos`` of sequence ``seq``."""

    _fields_ = [
        ("seq", c_size_t),
        ("pos", c_size_t),
    ]


class prge_batch(Structure):
    """``prge_batch``: the sequences of one forward pass and the outputs wanted from it."""

    _fields_ = [
        ("seqs", POINTER(prge_seq)),
        ("n_seqs", c_size_t),
        ("outputs", POINTER(prge_seq_pos)),
        ("n_outputs", c_size_t),
    ]


# ---- Training ------------------------------------------------------------------------------

PRGE_SPLIT_TRAIN = 0
PRGE_SPLIT_DEV = 1

PRGE_ADAPTER_CURRENT = 0
PRGE_ADAPTER_BEST = 1


class prge_progress(Structure):
    """``prge_progress``: the state of a training run, passed to the callback after each step."""

    _fields_ = [
        ("step", c_uint64),
        ("total_steps", c_uint64),
        ("elapsed_s", c_double),
        ("eta_s", c_double),
        ("train_loss", c_float),
        ("evaluated", c_int32),
        ("dev_loss", c_float),
        ("dev_accuracy", c_float),
        ("best_dev_accuracy", c_float),
    ]


# typedef int (*prge_progress_fn)(const prge_progress *progress, void *user_data);
# NULL is prge_progress_fn() (ctypes refuses None for a function pointer argument). Keep a
# callback object referenced for as long as the library may call it.
prge_progress_fn = CFUNCTYPE(c_int, POINTER(prge_progress), c_void_p)

# ---- Functions -----------------------------------------------------------------------------

_lib, library_path = _loader.load(ABI_VERSION)

#: Every declared function by name, with its argtypes and restype (the header test reads it).
functions: Dict[str, Any] = {}


def _missing(name: str) -> Callable[..., Any]:
    """A stand-in for a function the loaded library does not export."""

    def call(*_args: Any) -> Any:
        raise LibraryError(
            f"{library_path} does not export {name}: the library is older than prge.h "
            "even though it reports the same ABI version"
        )

    call.__name__ = name
    return call


def _declare(name: str, restype: Any, argtypes: List[Any]) -> Any:
    """Sets ``argtypes``/``restype`` on the library's function ``name`` and returns it."""
    try:
        fn = getattr(_lib, name)
    except AttributeError:
        fn = _missing(name)
    fn.argtypes = argtypes
    fn.restype = restype
    functions[name] = fn
    return fn


# int32_t prge_abi_version(void);
prge_abi_version = _declare("prge_abi_version", c_int32, [])

# const char *prge_last_error(void);
prge_last_error = _declare("prge_last_error", c_char_p, [])

# const char *prge_status_string(prge_status status);
prge_status_string = _declare("prge_status_string", c_char_p, [prge_status])

# prge_status prge_model_default_params(prge_model_params *out);
prge_model_default_params = _declare(
    "prge_model_default_params", prge_status, [POINTER(prge_model_params)]
)

# prge_status prge_model_load(const char *path, const prge_model_params *params, prge_model **out);
prge_model_load = _declare(
    "prge_model_load",
    prge_status,
    [c_char_p, POINTER(prge_model_params), POINTER(prge_model_p)],
)

# prge_status prge_model_free(prge_model *model);
prge_model_free = _declare("prge_model_free", prge_status, [prge_model_p])

# prge_status prge_model_n_vocab(const prge_model *model, size_t *out);
prge_model_n_vocab = _declare("prge_model_n_vocab", prge_status, [prge_model_p, POINTER(c_size_t)])

# prge_status prge_model_n_ctx_train(const prge_model *model, size_t *out);
prge_model_n_ctx_train = _declare(
    "prge_model_n_ctx_train", prge_status, [prge_model_p, POINTER(c_size_t)]
)

# prge_status prge_model_n_layer(const prge_model *model, size_t *out);
prge_model_n_layer = _declare("prge_model_n_layer", prge_status, [prge_model_p, POINTER(c_size_t)])

# prge_status prge_model_n_embd(const prge_model *model, size_t *out);
prge_model_n_embd = _declare("prge_model_n_embd", prge_status, [prge_model_p, POINTER(c_size_t)])

# prge_status prge_model_architecture(const prge_model *model, char *buf, size_t buf_size,
#                                     size_t *len_out);
prge_model_architecture = _declare(
    "prge_model_architecture",
    prge_status,
    [prge_model_p, POINTER(c_char), c_size_t, POINTER(c_size_t)],
)

# prge_status prge_model_meta_str(const prge_model *model, const char *key, char *buf,
#                                 size_t buf_size, size_t *len_out);
prge_model_meta_str = _declare(
    "prge_model_meta_str",
    prge_status,
    [prge_model_p, c_char_p, POINTER(c_char), c_size_t, POINTER(c_size_t)],
)

# prge_status prge_tokenize(const prge_model *model, const char *text, size_t text_len,
#                           int add_special, int parse_special, int32_t *out, size_t cap,
#                           size_t *n_out);
prge_tokenize = _declare(
    "prge_tokenize",
    prge_status,
    [prge_model_p, c_char_p, c_size_t, c_int, c_int, POINTER(c_int32), c_size_t, POINTER(c_size_t)],
)

# prge_status prge_detokenize(const prge_model *model, const int32_t *tokens, size_t n_tokens,
#                             char *buf, size_t buf_size, size_t *len_out);
prge_detokenize = _declare(
    "prge_detokenize",
    prge_status,
    [prge_model_p, POINTER(c_int32), c_size_t, POINTER(c_char), c_size_t, POINTER(c_size_t)],
)

# prge_status prge_adapter_create(const prge_model *model, const char *json_options,
#                                 prge_adapter **out);
prge_adapter_create = _declare(
    "prge_adapter_create", prge_status, [prge_model_p, c_char_p, POINTER(prge_adapter_p)]
)

# prge_status prge_adapter_load(const prge_model *model, const char *path, prge_adapter **out);
prge_adapter_load = _declare(
    "prge_adapter_load", prge_status, [prge_model_p, c_char_p, POINTER(prge_adapter_p)]
)

# prge_status prge_adapter_save(const prge_adapter *adapter, const char *path);
prge_adapter_save = _declare("prge_adapter_save", prge_status, [prge_adapter_p, c_char_p])

# prge_status prge_adapter_n_params(const prge_adapter *adapter, size_t *out);
prge_adapter_n_params = _declare(
    "prge_adapter_n_params", prge_status, [prge_adapter_p, POINTER(c_size_t)]
)

# prge_status prge_adapter_free(prge_adapter *adapter);
prge_adapter_free = _declare("prge_adapter_free", prge_status, [prge_adapter_p])

# prge_status prge_forward(prge_model *model, const prge_adapter *adapter,
#                          const prge_batch *batch, float *logits, size_t logits_cap);
prge_forward = _declare(
    "prge_forward",
    prge_status,
    [prge_model_p, prge_adapter_p, POINTER(prge_batch), POINTER(c_float), c_size_t],
)

# prge_status prge_generate(prge_model *model, const prge_adapter *adapter, const char *prompt,
#                           int32_t n_predict, char *buf, size_t buf_size, size_t *len_out);
prge_generate = _declare(
    "prge_generate",
    prge_status,
    [prge_model_p, prge_adapter_p, c_char_p, c_int32, POINTER(c_char), c_size_t, POINTER(c_size_t)],
)

# prge_status prge_classify(prge_model *model, const prge_adapter *adapter, const char *prompt,
#                           const char *const *labels, size_t n_labels, float *scores,
#                           size_t *best);
prge_classify = _declare(
    "prge_classify",
    prge_status,
    [
        prge_model_p,
        prge_adapter_p,
        c_char_p,
        POINTER(c_char_p),
        c_size_t,
        POINTER(c_float),
        POINTER(c_size_t),
    ],
)

# prge_status prge_trainer_create(prge_model *model, const prge_adapter *adapter,
#                                 const char *json_config, prge_trainer **out);
prge_trainer_create = _declare(
    "prge_trainer_create",
    prge_status,
    [prge_model_p, prge_adapter_p, c_char_p, POINTER(prge_trainer_p)],
)

# prge_status prge_trainer_free(prge_trainer *trainer);
prge_trainer_free = _declare("prge_trainer_free", prge_status, [prge_trainer_p])

# prge_status prge_trainer_add_jsonl(prge_trainer *trainer, int32_t split, const char *jsonl,
#                                    size_t len, size_t *n_added);
prge_trainer_add_jsonl = _declare(
    "prge_trainer_add_jsonl",
    prge_status,
    [prge_trainer_p, c_int32, c_char_p, c_size_t, POINTER(c_size_t)],
)

# prge_status prge_trainer_step(prge_trainer *trainer, const char *jsonl, size_t len,
#                               float *losses, size_t losses_cap, size_t *n_losses);
prge_trainer_step = _declare(
    "prge_trainer_step",
    prge_status,
    [prge_trainer_p, c_char_p, c_size_t, POINTER(c_float), c_size_t, POINTER(c_size_t)],
)

# prge_status prge_trainer_train(prge_trainer *trainer, uint64_t max_steps, double max_seconds,
#                                prge_progress_fn callback, void *user_data);
prge_trainer_train = _declare(
    "prge_trainer_train",
    prge_status,
    [prge_trainer_p, c_uint64, c_double, prge_progress_fn, c_void_p],
)

# prge_status prge_trainer_evaluate(prge_trainer *trainer, int32_t split, float *accuracy,
#                                   float *loss, size_t *n);
prge_trainer_evaluate = _declare(
    "prge_trainer_evaluate",
    prge_status,
    [prge_trainer_p, c_int32, POINTER(c_float), POINTER(c_float), POINTER(c_size_t)],
)

# prge_status prge_trainer_get_adapter(prge_trainer *trainer, int32_t which, prge_adapter **out);
prge_trainer_get_adapter = _declare(
    "prge_trainer_get_adapter", prge_status, [prge_trainer_p, c_int32, POINTER(prge_adapter_p)]
)

# prge_status prge_trainer_save_checkpoint(prge_trainer *trainer, const char *path);
prge_trainer_save_checkpoint = _declare(
    "prge_trainer_save_checkpoint", prge_status, [prge_trainer_p, c_char_p]
)

# prge_status prge_trainer_load_checkpoint(prge_trainer *trainer, const char *path);
prge_trainer_load_checkpoint = _declare(
    "prge_trainer_load_checkpoint", prge_status, [prge_trainer_p, c_char_p]
)

# prge_status prge_trainer_n_steps(const prge_trainer *trainer, uint64_t *out);
prge_trainer_n_steps = _declare(
    "prge_trainer_n_steps", prge_status, [prge_trainer_p, POINTER(c_uint64)]
)


def last_error() -> str:
    """``prge_last_error()`` decoded: the message of this thread's most recent failed call."""
    message: Optional[bytes] = prge_last_error()
    return (message or b"").decode("utf-8", errors="replace")


def status_string(status: int) -> str:
    """``prge_status_string(status)`` decoded."""
    name: Optional[bytes] = prge_status_string(status)
    return (name or b"").decode("utf-8", errors="replace")


_version = prge_abi_version()
if _version != ABI_VERSION:
    raise LibraryError(
        f"{library_path} has ABI version {_version}, but this binding was written for "
        f"version {ABI_VERSION} (prge.h's PRGE_ABI_VERSION): install the matching library "
        "or binding, or point PRGE_LIBRARY at the right libprge.so"
    )

del _version
