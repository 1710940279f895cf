"""The :class:`Adapter`: a LoRA-FA adapter (frozen random A, trained B) for one model."""

from __future__ import annotations

import json
from ctypes import byref, c_size_t, c_void_p
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Sequence

from . import _capi
from ._common import Owner, PathLike, check, path_arg

if TYPE_CHECKING:
    from .model import Model


def _model_handle(model: "Model") -> int:
    """The handle of a model argument (imported here: the model module imports this one)."""
    from .model import Model

    if not isinstance(model, Model):
        raise TypeError(f"model must be a prge.Model, not {type(model).__name__}")
    return model.handle


class Adapter(Owner):
    """A LoRA-FA adapter for one model: per adapted projection W a frozen random A (r x d_in)
    and a trained B (d_out x r); inference computes W x + (alpha/r) B A x. Saved and loaded as
    GGUF in llama.cpp's LoRA adapter layout.

    Make one with :meth:`create` or :meth:`load`, or take a trained one from a
    :class:`prge.Trainer`. It keeps its model alive; close it (or use ``with``) to release it.
    """

    model: "Model"

    @classmethod
    def _wrap(cls, model: "Model", handle: Optional[int]) -> "Adapter":
        adapter = cls.__new__(cls)
        Owner.__init__(adapter, handle)
        adapter.model = model
        return adapter

    def __init__(self) -> None:
        raise TypeError("make an Adapter with Adapter.create, Adapter.load or Trainer.best_adapter")

    @classmethod
    def create(
        cls,
        model: "Model",
        *,
        rank: Optional[int] = None,
        alpha: Optional[float] = None,
        targets: Optional[Sequence[str]] = None,
        layers: Optional[Sequence[int]] = None,
        seed: Optional[int] = None,
        a_scale: Optional[Mapping[str, float]] = None,
    ) -> "Adapter":
        """A fresh adapter for ``model`` (B = 0, A drawn from ``seed``). Options left at
        ``None`` take the library's defaults, the training recipe's adapter (rank 2, alpha 8·√2,
        all seven projections ``"q","k","v","o","gate","up","down"`` of the top 15 layers,
        seed 0). ``a_scale`` maps targets to a factor on A's init (default 1), e.g.
        ``{"v": 0.5}``: that tensor's zero-order steps move its output 0.25× as much."""
        handle = _model_handle(model)
        options: Dict[str, Any] = {}
        if rank is not None:
            options["rank"] = rank
        if alpha is not None:
            options["alpha"] = alpha
        if targets is not None:
            options["targets"] = list(targets)
        if layers is not None:
            options["layers"] = list(layers)
        if seed is not None:
            options["seed"] = seed
        if a_scale is not None:
            options["a_scale"] = dict(a_scale)
        out = c_void_p()
        check(_capi.prge_adapter_create(handle, json.dumps(options).encode("utf-8"), byref(out)))
        return cls._wrap(model, out.value)

    @classmethod
    def load(cls, model: "Model", path: PathLike) -> "Adapter":
        """Loads an adapter GGUF (prge's own, or one made by llama.cpp's converter / PEFT) and
        checks that it fits ``model``."""
        handle, raw_path = _model_handle(model), path_arg(path, "path")
        out = c_void_p()
        check(_capi.prge_adapter_load(handle, raw_path, byref(out)))
        return cls._wrap(model, out.value)

    def _release(self, handle: int) -> int:
        return int(_capi.prge_adapter_free(handle))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"n_params={self.n_params}"
        return f"<prge.Adapter {state}>"

    def save(self, path: PathLike) -> None:
        """Writes the adapter GGUF atomically: a crash leaves the old file or the new one."""
        check(_capi.prge_adapter_save(self.handle, path_arg(path, "path")))

    @property
    def n_params(self) -> int:
        """Number of trained parameters (elements of all B matrices)."""
        value = c_size_t()
        check(_capi.prge_adapter_n_params(self.handle, byref(value)))
        return value.value
