"""Builds the pure-Python ``prge`` package, and bundles a libprge build into it when one is found.

``pip install ./bindings/python`` copies ``build/lib/libprge.so`` of the repository (what ``make``
builds) into the package as ``prge/libprge.so.<ABI>``, where the binding looks right after
``PRGE_LIBRARY``. ``PRGE_BUNDLE_LIBRARY=/path/to/libprge.so`` bundles another file and
``PRGE_BUNDLE_LIBRARY=0`` bundles none. A wheel with a bundled library is tagged for this
platform; without one it is pure Python.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

IN_TREE_LIBRARY = Path(__file__).resolve().parent.parent.parent / "build" / "lib" / "libprge.so"


def bundled_library() -> Optional[Path]:
    """The library file to copy into the package, if any (symlinks resolved to the soname file)."""
    choice = os.environ.get("PRGE_BUNDLE_LIBRARY")
    if choice == "0":
        return None
    if choice:
        path = Path(choice)
        if not path.is_file():
            raise FileNotFoundError(f"PRGE_BUNDLE_LIBRARY={choice}: no such file")
        return path.resolve()
    return IN_TREE_LIBRARY.resolve() if IN_TREE_LIBRARY.is_file() else None


class BuildPy(build_py):
    """build_py that also copies the bundled library into the built package."""

    def run(self) -> None:
        super().run()
        library = bundled_library()
        if library is not None:
            target = Path(self.build_lib) / "prge" / library.name
            shutil.copyfile(library, target)
            target.chmod(0o755)


class PlatformDistribution(Distribution):
    """Marks the distribution as platform-specific exactly when it carries a library."""

    def has_ext_modules(self) -> bool:
        return bundled_library() is not None


setup(cmdclass={"build_py": BuildPy}, distclass=PlatformDistribution)
