"""The ctypes layer against the header: every function bound with the header's types, every
struct laid out as the C compiler lays it out, constants equal, misuse reported by status."""

from __future__ import annotations

import ctypes
import re
import subprocess
from ctypes import (
    POINTER,
    byref,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int32,
    c_size_t,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from types import FunctionType
from typing import Any, Callable, Dict, List, Tuple

from conftest import HEADER

from prge import _capi

HANDLES = ("prge_model", "prge_adapter", "prge_trainer")
STRUCTS = ("prge_model_params", "prge_seq", "prge_seq_pos", "prge_batch", "prge_progress")
SCALARS: Dict[str, Any] = {
    "void": None,
    "int": c_int,
    "int32_t": c_int32,
    "uint64_t": c_uint64,
    "size_t": c_size_t,
    "double": c_double,
    "float": ctypes.c_float,
    "prge_status": c_int32,
    "prge_numeric_mode": c_int32,
    "prge_progress_fn": _capi.prge_progress_fn,
}


def header_text() -> str:
    """The header without comments."""
    return re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)


def declarations() -> Dict[str, Tuple[str, List[str]]]:
    """Every function prototype of the header: name -> (return type, parameter declarations)."""
    found = {}
    for match in re.finditer(
        r"^([a-z][\w \*]*?)\s*\b(prge_\w+)\(([^)]*)\);", header_text(), flags=re.M
    ):
        ret, name, params = match.groups()
        params = " ".join(params.split())
        found[name] = (ret, [] if params == "void" else [p.strip() for p in params.split(",")])
    return found


def ctype_of(declaration: str, has_name: bool) -> Any:
    """The ctypes type the C type of ``declaration`` maps to (names dropped when ``has_name``)."""
    text = declaration
    if has_name:
        text = re.sub(r"\w+$", "", text)
    is_const_char = re.match(r"\s*const\s+char\b", text) is not None
    words = re.sub(r"\bconst\b", "", text).replace("*", " * ").split()
    base, stars = words[0], words.count("*")
    if base == "char":  # text in; a buffer out; an array of texts in
        if stars == 1:
            return c_char_p if is_const_char else POINTER(c_char)
        return POINTER(c_char_p)
    if base in HANDLES:
        return c_void_p if stars == 1 else POINTER(c_void_p)
    if base == "void" and stars == 1:
        return c_void_p
    element = getattr(_capi, base) if base in STRUCTS else SCALARS[base]
    for _ in range(stars):
        element = POINTER(element)
    return element


def test_every_header_function_is_declared_with_the_header_types() -> None:
    declared = declarations()
    assert len(declared) >= 30, "the header parser found too few prototypes"
    assert sorted(declared) == sorted(
        _capi.functions
    ), "functions in prge.h and in prge._capi differ"
    for name, (ret, params) in declared.items():
        fn = _capi.functions[name]
        assert fn.restype is ctype_of(ret, has_name=False), f"{name}: restype"
        wanted = [ctype_of(p, has_name=True) for p in params]
        assert list(fn.argtypes) == wanted, f"{name}: argtypes {fn.argtypes} != header {wanted}"


def test_every_declared_function_is_exported_by_the_library() -> None:
    missing = [name for name, fn in _capi.functions.items() if isinstance(fn, FunctionType)]
    assert missing == [], f"{_capi.library_path} lacks {missing}"


def test_constants_match_the_header() -> None:
    text = header_text()
    version = re.search(r"#define PRGE_ABI_VERSION (\d+)", text)
    assert (
        version is not None
        and int(version.group(1)) == _capi.ABI_VERSION == _capi.prge_abi_version()
    )
    constants = dict(re.findall(r"\b(PRGE_[A-Z0-9_]+)\s*=\s*(\d+)", text))
    assert len(constants) >= 15
    for name, value in constants.items():
        assert getattr(_capi, name) == int(value), name


def test_struct_layouts_match_the_c_compiler(compile_c: Callable[[str, str], Path]) -> None:
    lines = []
    for struct in STRUCTS:
        lines.append(f'printf("{struct} size %zu\\n", sizeof({struct}));')
        for field, _ in getattr(_capi, struct)._fields_:
            lines.append(f'printf("{struct} {field} %zu\\n", offsetof({struct}, {field}));')
    source = '#include <stddef.h>\n#include <stdio.h>\n#include "prge.h"\n'
    source += "int main(void) {\n%s\nreturn 0;\n}\n"
    exe = compile_c("layouts", source % "\n".join(lines))
    from_c = subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    from_ctypes = []
    for struct in STRUCTS:
        cls = getattr(_capi, struct)
        from_ctypes.append(f"{struct} size {ctypes.sizeof(cls)}")
        from_ctypes += [
            f"{struct} {field} {getattr(cls, field).offset}" for field, _ in cls._fields_
        ]
    assert from_ctypes == from_c


def test_status_strings_and_empty_last_error() -> None:
    assert _capi.status_string(_capi.PRGE_OK) == "ok"
    assert _capi.status_string(_capi.PRGE_ERR_INVALID_ARGUMENT) == "invalid argument"
    assert _capi.status_string(12345) == "unknown status"


def test_freed_and_made_up_handles_are_errors_not_crashes(model_path: Path) -> None:
    handle = c_void_p()
    assert _capi.prge_model_load(str(model_path).encode(), None, byref(handle)) == _capi.PRGE_OK
    n_vocab = c_size_t()
    assert _capi.prge_model_n_vocab(handle, byref(n_vocab)) == _capi.PRGE_OK
    assert n_vocab.value == 49152
    assert _capi.prge_model_free(handle) == _capi.PRGE_OK
    for bad in (handle, c_void_p(0xDEADBEEF), None):
        assert _capi.prge_model_n_vocab(bad, byref(n_vocab)) == _capi.PRGE_ERR_INVALID_ARGUMENT
        assert _capi.last_error() != ""
    assert _capi.prge_model_free(handle) == _capi.PRGE_ERR_INVALID_ARGUMENT
    assert _capi.prge_model_free(None) == _capi.PRGE_OK


def test_text_output_asks_for_its_length(model: Any) -> None:
    length = c_size_t()
    status = _capi.prge_model_architecture(model.handle, None, 0, byref(length))
    assert status == _capi.PRGE_ERR_BUFFER_TOO_SMALL
    assert length.value == len("llama")
    buf = ctypes.create_string_buffer(length.value + 1)
    assert _capi.prge_model_architecture(model.handle, buf, len(buf), None) == _capi.PRGE_OK
    assert buf.value == b"llama"
