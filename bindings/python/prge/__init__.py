"""prge: on-device LoRA fine-tuning of quantized GGUF language models by P-RGE, from Python.

A thin layer over libprge's C interface (``prge.h``)::

    import prge

    with prge.Model("SmolLM2-135M-Instruct.Q4_1.gguf") as model:
        ids = model.tokenize("The capital of France is")
        logits = model.forward(ids)                     # (1, n_vocab)
        with prge.Trainer(model, {"task": "sst2", "q": 2, "batch": 2}) as trainer:
            trainer.add_examples("train.jsonl")
            trainer.train(steps=100, progress=lambda p: print(p.step, p.train_loss))
            with trainer.best_adapter() as adapter:
                adapter.save("adapter.gguf")
                print(model.generate("The movie was", adapter=adapter))

:mod:`prge._capi` is the one-to-one ctypes layer beneath these classes. The library is looked
up when this package is imported (``PRGE_LIBRARY``, next to the package, the build tree, the
system; see :mod:`prge._loader`) and must have this binding's ABI version.
"""

from ._capi import ABI_VERSION, library_path
from .adapter import Adapter
from .errors import (
    BufferTooSmallError,
    CancelledError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    IoError,
    LibraryError,
    OutOfMemoryError,
    PrgeError,
    StateError,
    UnsupportedError,
)
from .model import Classification, Model
from .trainer import Evaluation, Progress, Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION",
    "Adapter",
    "BufferTooSmallError",
    "CancelledError",
    "Classification",
    "Evaluation",
    "FormatError",
    "InternalError",
    "InvalidArgumentError",
    "IoError",
    "LibraryError",
    "Model",
    "OutOfMemoryError",
    "PrgeError",
    "Progress",
    "StateError",
    "TrainResult",
    "Trainer",
    "UnsupportedError",
    "library_path",
]
