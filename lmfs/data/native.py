"""The data unit's compiled kernel and the switch between it and the numpy code.

MinHash near-dedup's hot loops — text normalization, word and n-gram hashing, per-document sort/unique, the
minimum over the hash family, and the LSH bucket/verify/union-find loop — exist twice: as vectorized numpy +
Python in :mod:`lmfs.data.dedup`, which is the reference, and as the C extension module ``lmfs.data._cminhash``
(``lmfs/data/csrc/minhash.c``) built when lmfs is installed. Both give bit-identical signatures, n-gram hash
sets and clusters (tests compare them); the C module is used whenever it is importable.

``LMFS_DATA_BACKEND`` chooses: ``auto`` (default: C when built, else numpy), ``c`` (C or a clear error),
``numpy`` (always the reference code).
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType

BACKEND_ENV = "LMFS_DATA_BACKEND"
BACKENDS = ("auto", "c", "numpy")


def wanted_backend() -> str:
    """The backend asked for by ``LMFS_DATA_BACKEND`` (``auto`` when unset)."""
    value = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={value!r}: expected one of {', '.join(BACKENDS)}")
    return value


def load_minhash(backend: str | None = None) -> ModuleType | None:
    """``lmfs.data._cminhash``, or None when numpy is wanted or the module is not built (with ``c``: an error
    that says how to build it). ``backend`` overrides the environment variable."""
    backend = backend or wanted_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "numpy":
        return None
    try:
        module = importlib.import_module("lmfs.data._cminhash")
    except ImportError as exc:
        if backend == "c":
            raise ImportError(
                f"the compiled module lmfs.data._cminhash is not built ({exc}); reinstall lmfs with a C compiler "
                f"and Python headers available (`pip install -e .`), or set {BACKEND_ENV}=numpy"
            ) from exc
        return None
    stale = _stale_reason(module)
    if stale is None:
        return module
    if backend == "c":
        raise ImportError(stale)
    warnings.warn(stale + "; using the numpy MinHash code", RuntimeWarning, stacklevel=2)
    return None


def _stale_reason(module: ModuleType) -> str | None:
    """Why a built module is older than its C source (an editable install whose source changed after the build),
    or None. Installed wheels carry no sources and are never stale."""
    built = Path(getattr(module, "__file__", "") or "")
    source = Path(__file__).with_name("csrc") / "minhash.c"
    try:
        if built.is_file() and source.is_file() and source.stat().st_mtime > built.stat().st_mtime:
            return (
                f"{built.name} is older than {source} (rebuild it: `pip install -e .`, or `nox -s tests` which "
                "reinstalls)"
            )
    except OSError:
        pass
    return None
