"""Finding and loading libprge.

Search order (the first file that exists and loads wins):

1. ``PRGE_LIBRARY``: when set, the path of the library file, and the only place looked at
   (an explicit choice never silently falls back to another library);
2. next to the package: ``prge/libprge.so.<ABI>`` or ``prge/libprge.so`` (where ``pip install``
   puts a copy of an in-tree build, see the README);
3. the build tree: ``build/lib/libprge.so`` in the package's directory or any directory above it
   (a checkout of the repository after ``make``);
4. the system: the dynamic loader's own search (``LD_LIBRARY_PATH``, ``ld.so.cache``, ...) for
   ``libprge.so.<ABI>``, and the name ``ctypes.util.find_library("prge")`` reports.

When nothing loads, :class:`prge.errors.LibraryError` lists every place tried and why it failed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path
from typing import List, Tuple

from .errors import LibraryError

#: The environment variable naming the library file to load.
ENV_VAR = "PRGE_LIBRARY"

_SUFFIX = ".dylib" if sys.platform == "darwin" else ".so"


def _candidates(abi_version: int) -> List[str]:
    """Where to look when ``PRGE_LIBRARY`` is not set, in order: file paths, then bare names."""
    versioned, plain = f"libprge{_SUFFIX}.{abi_version}", f"libprge{_SUFFIX}"
    package = Path(__file__).resolve().parent
    places = [str(package / versioned), str(package / plain)]
    places += [str(parent / "build" / "lib" / plain) for parent in package.parents]
    places.append(versioned)
    found = ctypes.util.find_library("prge")
    if found is not None and found not in places:
        places.append(found)
    return places


def load(abi_version: int) -> Tuple[ctypes.CDLL, str]:
    """Loads libprge (soname ``libprge.so.<abi_version>``); returns the library and the path or
    name it was loaded from."""
    explicit = os.environ.get(ENV_VAR)
    places = [explicit] if explicit else _candidates(abi_version)
    failures: List[str] = []
    for place in places:
        is_path = os.sep in place
        if is_path and not os.path.exists(place):
            failures.append(f"{place}: no such file")
            continue
        try:
            return ctypes.CDLL(place), place
        except OSError as error:
            failures.append(f"{place}: {error}")
    how = f"{ENV_VAR}={explicit}" if explicit else f"set {ENV_VAR} to the library file, or run make"
    raise LibraryError(
        f"libprge could not be loaded ({how}); looked at:\n  " + "\n  ".join(failures)
    )
