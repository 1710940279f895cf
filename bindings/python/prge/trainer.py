"""The :class:`Trainer`: P-RGE fine-tuning of an adapter's B matrices by zeroth-order steps."""

from __future__ import annotations

import json
import math
import operator
import os
from ctypes import byref, c_float, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Mapping, Optional, Union

from . import _capi
from ._common import Owner, PathLike, check, path_arg
from .adapter import Adapter, _model_handle

if TYPE_CHECKING:
    from ctypes import _Pointer

    from .model import Model

#: Split names for :meth:`Trainer.add_examples` and :meth:`Trainer.evaluate`.
SPLITS = {"train": _capi.PRGE_SPLIT_TRAIN, "dev": _capi.PRGE_SPLIT_DEV}

# Room for one step's 2q losses before the first step says how many there are (q up to 16).
_LOSSES_GUESS = 32

#: A trainer configuration: a dict, JSON text, or an ``os.PathLike`` to a JSON file.
Config = Union[Mapping[str, Any], str, "os.PathLike[str]", None]
#: Examples: dicts (one per example, as one line of the task's JSONL), or a JSONL file's path.
Examples = Union[Iterable[Mapping[str, Any]], str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Progress:
    """The state of a training run after one step (``prge_progress``).

    Attributes:
        step: steps done so far, over all runs of this trainer.
        total_steps: the planned total, 0 if the run is bounded by time only.
        elapsed_s: seconds since this run started.
        eta_s: estimated seconds left, ``None`` if unknown.
        train_loss: the mean of the step's 2q losses.
        evaluated: whether a dev evaluation ran after this step.
        dev_loss: the dev loss of that evaluation (``None`` when none ran).
        dev_accuracy: its accuracy (``None`` when none ran; NaN for a non-classification task).
        best_dev_accuracy: the best so far (``None`` before the first evaluation).
    """

    step: int
    total_steps: int
    elapsed_s: float
    eta_s: Optional[float]
    train_loss: float
    evaluated: bool
    dev_loss: Optional[float]
    dev_accuracy: Optional[float]
    best_dev_accuracy: Optional[float]

    @classmethod
    def _from_c(cls, p: _capi.prge_progress) -> "Progress":
        evaluated = p.evaluated != 0
        return cls(
            step=p.step,
            total_steps=p.total_steps,
            elapsed_s=p.elapsed_s,
            eta_s=p.eta_s if p.eta_s >= 0 else None,
            train_loss=p.train_loss,
            evaluated=evaluated,
            dev_loss=p.dev_loss if evaluated else None,
            dev_accuracy=p.dev_accuracy if evaluated else None,
            best_dev_accuracy=None if math.isnan(p.best_dev_accuracy) else p.best_dev_accuracy,
        )


@dataclass(frozen=True)
class TrainResult:
    """What :meth:`Trainer.train` did.

    Attributes:
        steps: steps done in this run.
        stopped: whether the progress callback asked to stop.
        last: the progress after the run's last step (``None`` if it did no step).
    """

    steps: int
    stopped: bool
    last: Optional[Progress]


@dataclass(frozen=True)
class Evaluation:
    """The result of :meth:`Trainer.evaluate`: accuracy (NaN for a non-classification task),
    mean loss, and the number of examples evaluated."""

    accuracy: float
    loss: float
    n: int


def _config_text(config: Config) -> str:
    """The JSON text of a configuration given as a dict, JSON text or a JSON file's path."""
    if config is None:
        return ""
    if isinstance(config, Mapping):
        return json.dumps(dict(config))
    if isinstance(config, str):
        return config
    if isinstance(config, os.PathLike):
        with open(config, encoding="utf-8") as file:
            return file.read()
    raise TypeError(f"config must be a dict, JSON text or a path, not {type(config).__name__}")


def _jsonl(examples: Iterable[Mapping[str, Any]]) -> bytes:
    """Examples (dicts) as JSONL text, one object per line."""
    if isinstance(examples, (str, bytes, Mapping)):
        raise TypeError("examples must be a list of dicts")
    lines = []
    for i, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise TypeError(f"examples[{i}] must be a dict, not {type(example).__name__}")
        lines.append(json.dumps(dict(example), ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8")


def _split(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'dev', not {split!r}")
    return SPLITS[split]


class Trainer(Owner):
    """Fine-tunes a copy of an adapter by P-RGE: each step runs the 2q perturbed copies of a
    minibatch in one forward pass and updates B from the loss differences.

    Args:
        model: the model to train on (kept alive by the trainer).
        config: a dict, JSON text, or the path (``os.PathLike``) of a JSON file, with the keys
            prge.h documents for ``prge_trainer_create`` (``task``, ``estimator``, ``q``,
            ``batch``, ``eps``, ``lr``, ``steps``, ``eval_every``, ``seed``, ``adapter``, ...);
            ``None`` for the library's recipe.
        adapter: the adapter to start from (copied: it may be closed afterwards); ``None`` for
            a fresh one from the config's ``adapter`` options.
    """

    def __init__(
        self, model: "Model", config: Config = None, *, adapter: Optional[Adapter] = None
    ) -> None:
        super().__init__(None)
        handle = _model_handle(model)
        if adapter is not None and not isinstance(adapter, Adapter):
            raise TypeError(f"adapter must be a prge.Adapter or None, not {type(adapter).__name__}")
        text = _config_text(config)
        out = c_void_p()
        check(
            _capi.prge_trainer_create(
                handle,
                None if adapter is None else adapter.handle,
                text.encode("utf-8"),
                byref(out),
            )
        )
        self._handle = out.value
        self.model = model
        self._n_losses = _LOSSES_GUESS

    def _release(self, handle: int) -> int:
        return int(_capi.prge_trainer_free(handle))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"n_steps={self.n_steps}"
        return f"<prge.Trainer {state}>"

    @property
    def n_steps(self) -> int:
        """Steps done so far."""
        value = c_uint64()
        check(_capi.prge_trainer_n_steps(self.handle, byref(value)))
        return value.value

    def add_examples(self, examples: Examples, *, split: str = "train") -> int:
        """Appends examples to the training set (``split="train"``) or the dev set
        (``"dev"``); all or nothing. ``examples`` is a list of dicts (for classification the
        task's fields, e.g. ``{"sentence": ..., "label": 1}``; for ``"prompt_response"``
        ``{"prompt": ..., "response": ...}``) or the path of a JSONL file. Returns the count."""
        handle, which = self.handle, _split(split)
        if isinstance(examples, (str, os.PathLike)):
            with open(examples, "rb") as file:
                text = file.read()
        else:
            text = _jsonl(examples)
        added = c_size_t()
        check(_capi.prge_trainer_add_jsonl(handle, which, text, len(text), byref(added)))
        return added.value

    def step(self, examples: Iterable[Mapping[str, Any]]) -> List[float]:
        """One P-RGE step on ``examples`` (dicts, not added to any set); returns the 2q losses
        L+_1..L+_q, L-_1..L-_q."""
        handle, text = self.handle, _jsonl(examples)
        count = c_size_t()
        while True:  # a buffer that is too small is refused before the step runs
            losses = (c_float * self._n_losses)()
            status = _capi.prge_trainer_step(
                handle, text, len(text), losses, len(losses), byref(count)
            )
            if status != _capi.PRGE_ERR_BUFFER_TOO_SMALL or count.value <= len(losses):
                break
            self._n_losses = count.value
        check(status)
        return losses[: count.value]

    def train(
        self,
        steps: Optional[int] = None,
        seconds: Optional[float] = None,
        progress: Optional[Callable[[Progress], Optional[bool]]] = None,
    ) -> TrainResult:
        """Trains on the training set for ``steps`` more steps and/or ``seconds`` (at least one
        must be given), evaluating on the dev set as the config says and keeping the best
        adapter.

        ``progress`` is called with a :class:`Progress` after every step; a true return value
        stops the run after that step. An exception raised inside it also stops the run and is
        raised again from here once the library has returned.
        """
        handle = self.handle
        max_steps = 0 if steps is None else operator.index(steps)
        max_seconds = 0.0 if seconds is None else float(seconds)
        if max_steps < 0 or not max_seconds >= 0:
            raise ValueError(f"steps ({steps}) and seconds ({seconds}) must not be negative")
        last: List[Progress] = []
        raised: List[BaseException] = []

        def on_step(p: "_Pointer[_capi.prge_progress]", _user_data: Optional[int]) -> int:
            try:
                last.append(Progress._from_c(p.contents))
                return 1 if progress is not None and progress(last[-1]) else 0
            except BaseException as error:  # noqa: BLE001 - raised again after the run
                raised.append(error)
                return 1

        callback = _capi.prge_progress_fn(on_step)  # referenced until the call returns
        status = _capi.prge_trainer_train(handle, max_steps, max_seconds, callback, None)
        if raised:
            raise raised[0]
        if status != _capi.PRGE_ERR_CANCELLED:
            check(status)
        return TrainResult(
            len(last), status == _capi.PRGE_ERR_CANCELLED, last[-1] if last else None
        )

    def evaluate(self, split: str = "dev") -> Evaluation:
        """Evaluates the current adapter on the dev set or the training set."""
        handle, which = self.handle, _split(split)
        accuracy, loss, n = c_float(), c_float(), c_size_t()
        check(_capi.prge_trainer_evaluate(handle, which, byref(accuracy), byref(loss), byref(n)))
        return Evaluation(accuracy.value, loss.value, n.value)

    def _adapter(self, which: int) -> Adapter:
        out = c_void_p()
        check(_capi.prge_trainer_get_adapter(self.handle, which, byref(out)))
        return Adapter._wrap(self.model, out.value)

    def current_adapter(self) -> Adapter:
        """A copy of the adapter as trained so far (a new :class:`Adapter` to close)."""
        return self._adapter(_capi.PRGE_ADAPTER_CURRENT)

    def best_adapter(self) -> Adapter:
        """A copy of the best adapter by dev loss (the current one if no evaluation ran)."""
        return self._adapter(_capi.PRGE_ADAPTER_BEST)

    def save_checkpoint(self, path: PathLike) -> None:
        """Writes adapter, step, best adapter and config atomically to ``path``."""
        check(_capi.prge_trainer_save_checkpoint(self.handle, path_arg(path, "path")))

    def load_checkpoint(self, path: PathLike) -> None:
        """Resumes from a checkpoint: training continues bit for bit as if it had not stopped."""
        check(_capi.prge_trainer_load_checkpoint(self.handle, path_arg(path, "path")))
