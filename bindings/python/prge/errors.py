"""Exceptions: one :class:`PrgeError` subclass per ``prge_status``, carrying the library's
message (``prge_last_error()``), plus :class:`LibraryError` when libprge cannot be used at all.

The subclasses also derive from the closest built-in exception, so ``except ValueError`` catches
an :class:`InvalidArgumentError` and ``except OSError`` an :class:`IoError`.
"""

from __future__ import annotations

from typing import Dict, Optional, Type


class LibraryError(ImportError):
    """libprge was not found, could not be loaded, or has another ABI version than the binding."""


class PrgeError(Exception):
    """A libprge call failed.

    Attributes:
        status: the ``prge_status`` the call returned (``PRGE_ERR_*``).
        message: the library's message for it (``prge_last_error()``), or the binding's own
            when the binding refused the call before reaching the library.
    """

    #: The ``prge_status`` this class stands for.
    code = -1

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = self.code if status is None else status
        self.message = message


class InvalidArgumentError(PrgeError, ValueError):
    """``PRGE_ERR_INVALID_ARGUMENT``: NULL, bad or freed handle, wrong size, out-of-range value."""

    code = 1


class IoError(PrgeError, OSError):
    """``PRGE_ERR_IO``: open/read/write/fsync/rename failed."""

    code = 2


class FormatError(PrgeError, ValueError):
    """``PRGE_ERR_FORMAT``: a file's bytes are malformed (GGUF, JSON, JSONL)."""

    code = 3


class UnsupportedError(PrgeError):
    """``PRGE_ERR_UNSUPPORTED``: valid but not implemented (architecture, type, ...)."""

    code = 4


class OutOfMemoryError(PrgeError, MemoryError):
    """``PRGE_ERR_OUT_OF_MEMORY``: an allocation or a size limit was refused."""

    code = 5


class BufferTooSmallError(PrgeError):
    """``PRGE_ERR_BUFFER_TOO_SMALL``: an output buffer is too small (the binding sizes its
    buffers, so seeing this one means a bug in the binding)."""

    code = 6


class StateError(PrgeError):
    """``PRGE_ERR_STATE``: the call is not valid in the object's current state (also raised by
    the binding for an object that was closed)."""

    code = 7


class CancelledError(PrgeError):
    """``PRGE_ERR_CANCELLED``: a progress callback asked to stop."""

    code = 8


class InternalError(PrgeError):
    """``PRGE_ERR_INTERNAL``: a bug in prge; please report it."""

    code = 9


_BY_STATUS: Dict[int, Type[PrgeError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        IoError,
        FormatError,
        UnsupportedError,
        OutOfMemoryError,
        BufferTooSmallError,
        StateError,
        CancelledError,
        InternalError,
    )
}


def error_for(status: int, message: str) -> PrgeError:
    """The exception for a failed call's status (a plain :class:`PrgeError` for an unknown one)."""
    return _BY_STATUS.get(status, PrgeError)(message, status)
