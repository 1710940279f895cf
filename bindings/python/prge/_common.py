"""What the Pythonic classes share: status checks, text in and out, and handle ownership."""

from __future__ import annotations

import os
from ctypes import Array, byref, c_char, c_size_t, create_string_buffer
from typing import Any, Callable, Optional, TypeVar, Union

from . import _capi
from .errors import StateError, error_for

#: A file system path as the classes accept it.
PathLike = Union[str, "os.PathLike[str]"]

_Self = TypeVar("_Self", bound="Owner")


def check(status: int) -> None:
    """Raises the :class:`prge.errors.PrgeError` subclass for a failed call's status, with the
    calling thread's last library message."""
    if status != _capi.PRGE_OK:
        raise error_for(status, _capi.last_error())


def text_arg(value: object, what: str) -> bytes:
    """A ``str`` argument as UTF-8; anything else is a :class:`TypeError` naming ``what``."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    return value.encode("utf-8")


def path_arg(value: object, what: str) -> bytes:
    """A path argument (``str`` or ``os.PathLike``) as bytes for the library."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), not {type(value).__name__}")
    return os.fsencode(value)


def read_text(call: Callable[[Array[c_char], int, Any], int], guess: int = 256) -> str:
    """Runs a text-output function ``call(buf, buf_size, len_out)`` of the library, once with
    ``guess`` bytes and again with the exact size if those were too few."""
    length = c_size_t()
    buf = create_string_buffer(guess)
    status = call(buf, guess, byref(length))
    if status == _capi.PRGE_ERR_BUFFER_TOO_SMALL:
        buf = create_string_buffer(length.value + 1)
        status = call(buf, length.value + 1, byref(length))
    check(status)
    return buf.raw[: length.value].decode("utf-8")


class Owner:
    """Owns one library handle and releases it exactly once: by :meth:`close`, at the end of a
    ``with`` block, or when the object is collected."""

    _handle: Optional[int] = None

    def __init__(self, handle: Optional[int]) -> None:
        self._handle = handle

    def _release(self, handle: int) -> int:
        """Frees ``handle`` with the library's ``*_free``; returns its status."""
        raise NotImplementedError

    @property
    def handle(self) -> int:
        """The library handle (for the :mod:`prge._capi` layer); :class:`StateError` once closed."""
        if self._handle is None:
            raise StateError(f"this {type(self).__name__} is closed")
        return self._handle

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has released the handle."""
        return self._handle is None

    def close(self) -> None:
        """Releases the handle; later calls do nothing, any other use raises :class:`StateError`."""
        handle, self._handle = self._handle, None
        if handle is not None:
            check(self._release(handle))

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing can be reported from a finalizer
            pass
