"""Error paths: the library's messages in typed exceptions, closed objects, wrong Python types,
and finding (or not finding) the library."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

import prge
from prge import _capi

PACKAGE = Path(prge.__file__).resolve().parent


def test_bad_model_path_raises_with_the_library_message(tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    with pytest.raises(prge.PrgeError) as error:
        prge.Model(missing)
    assert isinstance(error.value, prge.IoError) and isinstance(error.value, OSError)
    assert error.value.status == _capi.PRGE_ERR_IO
    assert str(missing) in error.value.message and str(error.value) == error.value.message


def test_malformed_model_file_is_a_format_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(prge.FormatError) as error:
        prge.Model(bogus)
    assert error.value.message


def test_bad_arguments_are_invalid_argument_errors(model: prge.Model) -> None:
    with pytest.raises(prge.InvalidArgumentError, match="vocabulary"):
        model.detokenize([model.n_vocab])
    with pytest.raises(prge.InvalidArgumentError):
        model.forward([model.n_vocab + 5])
    with pytest.raises(prge.InvalidArgumentError):
        model.forward([1, 2, 3], outputs=[(0, 3)])
    with pytest.raises(prge.InvalidArgumentError):
        model.meta("no.such.key")
    with pytest.raises(ValueError):  # InvalidArgumentError is a ValueError too
        model.meta("no.such.key")
    with pytest.raises(prge.InvalidArgumentError):
        prge.Model(os.devnull, numeric_mode="fp32", n_threads=-1)


def test_wrong_python_types_are_type_errors(model: prge.Model) -> None:
    with pytest.raises(TypeError):
        prge.Model(123)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        model.tokenize(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        model.detokenize("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        model.forward("The capital")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        model.forward([1, 2.5])  # type: ignore[list-item, arg-type]
    with pytest.raises(TypeError):
        model.forward([[1, 2], [3, "x"]])  # type: ignore[list-item, arg-type]
    with pytest.raises(TypeError):
        model.forward([1, 2], adapter="adapter")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        model.forward([1, 2], outputs="first")
    with pytest.raises(ValueError):
        model.forward([2**40])
    with pytest.raises(ValueError):
        model.forward([[1, 2], []])
    with pytest.raises(ValueError):
        model.forward([1, 2], outputs=[(0, -1)])
    with pytest.raises(ValueError):
        prge.Model(os.devnull, numeric_mode="fp64")
    with pytest.raises(TypeError):
        prge.Adapter.create("model")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        prge.Adapter()


def test_closed_objects_raise_state_errors(model_path: Path) -> None:
    with prge.Model(model_path) as model:
        adapter = prge.Adapter.create(model, rank=2)
        adapter.close()
        adapter.close()  # closing twice is fine
        with pytest.raises(prge.StateError, match="closed"):
            adapter.save("never.gguf")
        with pytest.raises(prge.StateError):
            model.forward([1, 2], adapter=adapter)
    assert model.closed and "closed" in repr(model)
    for use in (
        lambda: model.tokenize("x"),
        lambda: model.n_vocab,
        lambda: model.forward([1]),
        lambda: prge.Adapter.create(model),
        lambda: prge.Trainer(model),
    ):
        with pytest.raises(prge.StateError):
            use()
    model.close()


def test_adapter_keeps_working_while_its_model_is_referenced_only_by_it(model_path: Path) -> None:
    adapter = prge.Adapter.create(prge.Model(model_path), rank=2)
    logits = adapter.model.forward([504, 3575], adapter=adapter)
    assert logits.shape == (1, 49152)
    adapter.close()


def run_import(env: Dict[str, str], pythonpath: Path) -> subprocess.CompletedProcess:
    """``import prge`` in a fresh interpreter with ``env`` (PRGE_LIBRARY and the loader's paths
    cleared unless ``env`` sets them)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PRGE_LIBRARY", "LD_LIBRARY_PATH")}
    clean.update(env, PYTHONPATH=str(pythonpath))
    code = "import prge; print(prge.library_path)"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean, cwd=pythonpath
    )


def copy_package(root: Path, library: Optional[Path] = None) -> Path:
    """A copy of the package's sources under ``root`` (optionally with ``library`` next to them)."""
    target = root / "prge"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("*.so*", "__pycache__"))
    if library is not None:
        shutil.copy(library, target / library.name)
    return root


def test_prge_library_naming_nothing_lists_it(tmp_path: Path) -> None:
    result = run_import({"PRGE_LIBRARY": str(tmp_path / "nope.so")}, copy_package(tmp_path))
    assert result.returncode != 0
    assert "LibraryError" in result.stderr and str(tmp_path / "nope.so") in result.stderr


def test_nothing_found_lists_every_place(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    result = run_import({}, root)
    assert result.returncode != 0 and "LibraryError" in result.stderr
    for place in (
        root / "prge" / "libprge.so.1",
        root / "prge" / "libprge.so",
        root / "build" / "lib" / "libprge.so",
        tmp_path.parent / "build" / "lib" / "libprge.so",
    ):
        assert str(place) in result.stderr, place
    assert "libprge.so.1:" in result.stderr  # the system's search, by soname


def test_found_next_to_the_package_in_the_build_tree_and_on_the_system(tmp_path: Path) -> None:
    library = Path(prge.library_path).resolve()
    beside = copy_package(tmp_path / "beside", library)
    result = run_import({}, beside)
    assert result.stdout.strip() == str(beside / "prge" / library.name), result.stderr

    tree = copy_package(tmp_path / "tree" / "bindings" / "python")
    (tmp_path / "tree" / "build" / "lib").mkdir(parents=True)
    (tmp_path / "tree" / "build" / "lib" / "libprge.so").symlink_to(library)
    result = run_import({}, tree)
    assert result.stdout.strip() == str(
        tmp_path / "tree" / "build" / "lib" / "libprge.so"
    ), result.stderr

    system = tmp_path / "system-lib"
    system.mkdir()
    (system / "libprge.so.1").symlink_to(library)
    result = run_import({"LD_LIBRARY_PATH": str(system)}, copy_package(tmp_path / "system"))
    assert result.stdout.strip() == "libprge.so.1", result.stderr


def test_abi_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    capi = root / "prge" / "_capi.py"
    capi.write_text(capi.read_text().replace("ABI_VERSION = 1\n", "ABI_VERSION = 99\n"))
    result = run_import({"PRGE_LIBRARY": str(Path(prge.library_path).resolve())}, root)
    assert result.returncode != 0
    assert "has ABI version 1" in result.stderr and "version 99" in result.stderr
