"""Shared fixtures: the reference model loaded once, the repository's header and a C compiler.

The tests use the real library (found as ``import prge`` finds it; ``make test-python`` sets
``PRGE_LIBRARY`` to the fresh build) and the real reference model,
``models/SmolLM2-135M-Instruct.Q4_1.gguf`` of the repository (``make setup`` fetches it), or the
file named by ``PRGE_TEST_MODEL``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

import pytest

import prge

REPO = Path(__file__).resolve().parents[3]
HEADER = REPO / "Include" / "prge.h"
DATA = Path(__file__).resolve().parent / "data"
MODEL_PATH = Path(
    os.environ.get("PRGE_TEST_MODEL", REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf")
)

#: Short SST-2 sentences for the training tests (GLUE SST-2 train; "idx" is the row).
SST2 = [
    {"sentence": "hide new secretions from the parental units ", "label": 0, "idx": 0},
    {"sentence": "with his usual intelligence and subtlety ", "label": 1, "idx": 17},
    {"sentence": "contains no wit , only labored gags ", "label": 0, "idx": 1},
    {"sentence": "equals the original and in some ways even betters it ", "label": 1, "idx": 20},
    {"sentence": "remains utterly satisfied to remain the same throughout ", "label": 0, "idx": 3},
    {"sentence": "comes from the brave , uninhibited performances ", "label": 1, "idx": 23},
    {
        "sentence": "that 's far too tragic to merit such superficial treatment ",
        "label": 0,
        "idx": 5,
    },
    {
        "sentence": "enriched by an imaginatively mixed cast of antic spirits ",
        "label": 1,
        "idx": 25,
    },
]


@pytest.fixture(scope="session")
def model_path() -> Path:
    if not MODEL_PATH.is_file():
        pytest.fail(
            f"the reference model {MODEL_PATH} is missing: run `make setup` or set PRGE_TEST_MODEL"
        )
    return MODEL_PATH


@pytest.fixture(scope="session")
def model(model_path: Path) -> Iterator[prge.Model]:
    with prge.Model(model_path) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def reference() -> Dict[str, Any]:
    """llama.cpp's outputs on the reference model (a subset of shared/reference, see its "what")."""
    with open(DATA / "reference.json", encoding="utf-8") as file:
        return json.load(file)


@pytest.fixture(scope="session")
def compile_c(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """Compiles a C program against prge.h and the library the binding loaded; returns its path."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) to build the C side of the comparison")
    library = Path(prge.library_path).resolve()
    if not library.is_file():
        pytest.skip(
            f"the binding loaded {prge.library_path} by name, so there is no file to link against"
        )
    folder = tmp_path_factory.mktemp("c")

    def build(name: str, source: str) -> Path:
        (folder / f"{name}.c").write_text(source)
        exe = folder / name
        subprocess.run(
            [
                cc,
                "-std=c11",
                "-Wall",
                "-Werror",
                f"-I{HEADER.parent}",
                str(folder / f"{name}.c"),
                str(library),
                f"-Wl,-rpath,{library.parent}",
                "-o",
                str(exe),
            ],
            check=True,
        )
        return exe

    return build
