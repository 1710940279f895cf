"""The :class:`Model`: a loaded GGUF model, its tokenizer, forward pass, generation and
classification."""

from __future__ import annotations

import operator
from ctypes import POINTER, byref, c_char_p, c_float, c_int32, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from . import _capi
from ._common import Owner, PathLike, check, path_arg, read_text, text_arg
from .adapter import Adapter

try:
    import numpy
except ImportError:  # numpy is optional: logits are then lists of lists of floats
    numpy = None  # type: ignore[assignment]

#: ``numeric_mode`` names and their ``PRGE_NUMERIC_*`` values.
NUMERIC_MODES = {"fp32": _capi.PRGE_NUMERIC_FP32, "bf16": _capi.PRGE_NUMERIC_BF16, "int8": _capi.PRGE_NUMERIC_INT8}

_INT32_MAX = 2**31 - 1

#: Token ids: a list of ints, or any iterable of them (a numpy int array, ...).
Tokens = Iterable[int]
#: What :meth:`Model.forward` returns: a ``(n_outputs, n_vocab)`` float32 array with numpy,
#: a list of ``n_outputs`` lists of ``n_vocab`` floats without.
Logits = Any


@dataclass(frozen=True)
class Classification:
    """The result of :meth:`Model.classify`.

    Attributes:
        labels: the label words, as given.
        scores: their log-probabilities at the last prompt position (same order).
        best: the index of the most likely label.
    """

    labels: Tuple[str, ...]
    scores: Tuple[float, ...]
    best: int

    @property
    def label(self) -> str:
        """The most likely label word."""
        return self.labels[self.best]


def _token_ids(tokens: object, what: str) -> List[int]:
    """Token ids (any iterable of ints, numpy arrays included) as a list of ints in int32 range;
    the library checks them against the vocabulary."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{what} must be token ids (see Model.tokenize), not text")
    try:
        items = list(tokens)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(
            f"{what} must be a sequence of token ids, not {type(tokens).__name__}"
        ) from None
    ids = []
    for i, token in enumerate(items):
        try:
            value = operator.index(token)
        except TypeError:
            raise TypeError(f"{what}[{i}] must be an int, not {type(token).__name__}") from None
        if not -_INT32_MAX - 1 <= value <= _INT32_MAX:
            raise ValueError(f"{what}[{i}] = {value} is not a token id")
        ids.append(value)
    return ids


def _int32(value: object, what: str) -> int:
    """An ``int32_t`` argument, checked in Python so that ctypes cannot wrap it around."""
    number = operator.index(value)  # type: ignore[arg-type]
    if not -_INT32_MAX - 1 <= number <= _INT32_MAX:
        raise ValueError(f"{what} = {number} does not fit in an int32")
    return number


def _adapter_handle(adapter: Optional[Adapter]) -> Optional[int]:
    """The handle of an optional adapter argument (``None``: the base model)."""
    if adapter is None:
        return None
    if not isinstance(adapter, Adapter):
        raise TypeError(f"adapter must be a prge.Adapter or None, not {type(adapter).__name__}")
    return adapter.handle


class Model(Owner):
    """A GGUF model loaded by libprge (memory-mapped: the file must stay in place).

    Use it as a context manager or call :meth:`close`; adapters and trainers made from it keep
    it alive as long as they need it.

    Args:
        path: the ``.gguf`` file.
        n_threads: threads for forward passes (0: all online cores).
        numeric_mode: ``"fp32"`` (the reference), ``"bf16"`` (bf16 products, fp32 sums) or
            ``"int8"`` (activations quantized to int8 per 32 values against the Q4 weights;
            what the training recipe uses where the CPU has AVX-512 VNNI).
    """

    def __init__(self, path: PathLike, *, n_threads: int = 0, numeric_mode: str = "fp32") -> None:
        super().__init__(None)
        raw_path = path_arg(path, "path")
        if numeric_mode not in NUMERIC_MODES:
            raise ValueError(
                f"numeric_mode must be one of {sorted(NUMERIC_MODES)}, not {numeric_mode!r}"
            )
        params = _capi.prge_model_params(
            _int32(n_threads, "n_threads"), NUMERIC_MODES[numeric_mode]
        )
        handle = c_void_p()
        check(_capi.prge_model_load(raw_path, byref(params), byref(handle)))
        self._handle = handle.value
        self.path = str(path)
        self._n_vocab = self._size(_capi.prge_model_n_vocab)

    def _release(self, handle: int) -> int:
        return int(_capi.prge_model_free(handle))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"n_vocab={self._n_vocab}"
        return f"<prge.Model {self.path!r} {state}>"

    # ---- Metadata ---------------------------------------------------------------------------

    def _size(self, query: Any) -> int:
        value = c_size_t()
        check(query(self.handle, byref(value)))
        return value.value

    @property
    def n_vocab(self) -> int:
        """Vocabulary size: the length of a row of logits."""
        return self._size(_capi.prge_model_n_vocab)

    @property
    def n_ctx_train(self) -> int:
        """The context length the model was trained with."""
        return self._size(_capi.prge_model_n_ctx_train)

    @property
    def n_layer(self) -> int:
        """Number of transformer blocks."""
        return self._size(_capi.prge_model_n_layer)

    @property
    def n_embd(self) -> int:
        """Width of the residual stream."""
        return self._size(_capi.prge_model_n_embd)

    @property
    def architecture(self) -> str:
        """The architecture name from the GGUF metadata (e.g. ``"llama"``)."""
        handle = self.handle
        return read_text(
            lambda buf, size, length: _capi.prge_model_architecture(handle, buf, size, length)
        )

    def meta(self, key: str) -> str:
        """A scalar GGUF metadata value as text (strings as they are, numbers in decimal,
        booleans as ``"true"``/``"false"``); an absent key or an array value raises
        :class:`prge.errors.InvalidArgumentError`."""
        handle, raw_key = self.handle, text_arg(key, "key")
        return read_text(
            lambda buf, size, length: _capi.prge_model_meta_str(handle, raw_key, buf, size, length)
        )

    # ---- Tokens -----------------------------------------------------------------------------

    def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = False
    ) -> List[int]:
        """Token ids of ``text``. ``add_special`` adds BOS/EOS as the model's metadata says;
        ``parse_special`` turns special-token text such as ``"<|im_start|>"`` into its token."""
        handle, raw = self.handle, text_arg(text, "text")
        count = c_size_t()
        cap = len(raw) + 2  # at most one token per byte, plus BOS and EOS
        ids = (c_int32 * cap)()
        status = _capi.prge_tokenize(
            handle, raw, len(raw), int(add_special), int(parse_special), ids, cap, byref(count)
        )
        if status == _capi.PRGE_ERR_BUFFER_TOO_SMALL:
            cap = count.value
            ids = (c_int32 * cap)()
            status = _capi.prge_tokenize(
                handle, raw, len(raw), int(add_special), int(parse_special), ids, cap, byref(count)
            )
        check(status)
        return ids[: count.value]

    def detokenize(self, tokens: Tokens) -> str:
        """The text of ``tokens`` (each in ``[0, n_vocab)``)."""
        handle, ids = self.handle, _token_ids(tokens, "tokens")
        array = (c_int32 * len(ids))(*ids)
        return read_text(
            lambda buf, size, length: _capi.prge_detokenize(
                handle, array, len(ids), buf, size, length
            ),
            guess=16 * len(ids) + 16,
        )

    # ---- Forward ----------------------------------------------------------------------------

    def forward(
        self,
        tokens: Union[Tokens, Iterable[Tokens]],
        *,
        adapter: Optional[Adapter] = None,
        outputs: Union[str, Sequence[Tuple[int, int]]] = "last",
    ) -> Logits:
        """Runs one forward pass and returns logits, one row per output.

        Args:
            tokens: one sequence of token ids, or a list of sequences (a batch: sequences of
                different lengths run together, each at positions 0..n-1).
            adapter: a LoRA adapter to apply (``None``: the base model).
            outputs: which positions to return logits for: ``"last"`` (the last token of each
                sequence), ``"all"`` (every token of every sequence, in order), or a list of
                ``(sequence index, position)`` pairs.

        Returns:
            a ``(n_outputs, n_vocab)`` float32 numpy array, or without numpy a list of
            ``n_outputs`` lists of ``n_vocab`` floats.
        """
        handle, adapter_handle = self.handle, _adapter_handle(adapter)
        sequences = self._sequences(tokens)
        pairs = self._outputs(sequences, outputs)

        arrays = [(c_int32 * len(seq))(*seq) for seq in sequences]
        seqs = (_capi.prge_seq * len(arrays))(*(_capi.prge_seq(a, len(a)) for a in arrays))
        wanted = (_capi.prge_seq_pos * len(pairs))(*(_capi.prge_seq_pos(s, p) for s, p in pairs))
        batch = _capi.prge_batch(seqs, len(seqs), wanted, len(wanted))

        n_vocab = self._n_vocab
        if numpy is not None:
            logits = numpy.empty((len(pairs), n_vocab), dtype=numpy.float32)
            check(
                _capi.prge_forward(
                    handle,
                    adapter_handle,
                    byref(batch),
                    logits.ctypes.data_as(POINTER(c_float)),
                    logits.size,
                )
            )
            return logits
        flat = (c_float * (len(pairs) * n_vocab))()
        check(_capi.prge_forward(handle, adapter_handle, byref(batch), flat, len(flat)))
        return [flat[i * n_vocab : (i + 1) * n_vocab] for i in range(len(pairs))]

    @staticmethod
    def _sequences(tokens: object) -> List[List[int]]:
        """One sequence or a batch of them, as lists of ints."""
        if isinstance(tokens, (str, bytes)):
            raise TypeError("tokens must be token ids (see Model.tokenize), not text")
        try:
            items = list(tokens)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(f"tokens must be token ids, not {type(tokens).__name__}") from None
        if items and all(hasattr(item, "__index__") for item in items):
            return [_token_ids(items, "tokens")]
        return [_token_ids(seq, f"tokens[{i}]") for i, seq in enumerate(items)]

    @staticmethod
    def _outputs(sequences: List[List[int]], outputs: object) -> List[Tuple[int, int]]:
        """The ``(sequence, position)`` pairs that ``outputs`` names."""
        if outputs == "last":
            empty = [i for i, seq in enumerate(sequences) if not seq]
            if empty:
                raise ValueError(f"tokens[{empty[0]}] is empty: it has no last position")
            return [(i, len(seq) - 1) for i, seq in enumerate(sequences)]
        if outputs == "all":
            return [(i, p) for i, seq in enumerate(sequences) for p in range(len(seq))]
        if isinstance(outputs, str):
            raise ValueError(
                f"outputs must be 'last', 'all' or (sequence, position) pairs, not {outputs!r}"
            )
        try:
            given = list(outputs)  # type: ignore[call-overload]
            pairs = [(operator.index(s), operator.index(p)) for s, p in given]
        except (TypeError, ValueError):
            raise TypeError(
                "outputs must be 'last', 'all' or a list of (sequence, position) int pairs"
            ) from None
        negative = [pair for pair in pairs if min(pair) < 0]
        if negative:
            raise ValueError(f"outputs {negative[0]} has a negative index")
        return pairs

    # ---- Generation and classification ------------------------------------------------------

    def generate(
        self, prompt: str, n_predict: int = 32, *, adapter: Optional[Adapter] = None
    ) -> str:
        """Greedy continuation of ``prompt`` by at most ``n_predict`` tokens (stops at EOS);
        returns the generated text only."""
        handle, adapter_handle = self.handle, _adapter_handle(adapter)
        raw, n = text_arg(prompt, "prompt"), _int32(n_predict, "n_predict")
        return read_text(
            lambda buf, size, length: _capi.prge_generate(
                handle, adapter_handle, raw, n, buf, size, length
            ),
            guess=32 * max(n, 0) + 64,  # generation is costly: size the buffer to need no retry
        )

    def classify(
        self, prompt: str, labels: Sequence[str], *, adapter: Optional[Adapter] = None
    ) -> Classification:
        """Scores ``labels`` (each one token, e.g. ``" great"``) as continuations of ``prompt``
        by their full-vocabulary log-probability at the last prompt position."""
        handle, adapter_handle = self.handle, _adapter_handle(adapter)
        raw = text_arg(prompt, "prompt")
        if isinstance(labels, str):
            raise TypeError("labels must be a list of str, not one str")
        names = tuple(labels)
        raw_labels = (c_char_p * len(names))(
            *(text_arg(label, f"labels[{i}]") for i, label in enumerate(names))
        )
        scores = (c_float * len(names))()
        best = c_size_t()
        check(
            _capi.prge_classify(
                handle, adapter_handle, raw, raw_labels, len(names), scores, byref(best)
            )
        )
        return Classification(names, tuple(scores), best.value)
