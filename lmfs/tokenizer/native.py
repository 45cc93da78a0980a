"""The tokenizer's compiled kernels and the switch between them and the pure-Python code.

The hot loops of BPE training (the merge loop) and of encoding (GPT-2 pre-tokenization, pre-token counting, BPE
with a cache) exist twice: as readable pure Python, which is the reference, and as C extension modules built
when lmfs is installed (``lmfs/tokenizer/csrc/``). Both give identical results (tests compare them); the C
modules are used whenever they are importable.

``LMFS_TOKENIZER_BACKEND`` chooses: ``auto`` (default: C when built, else Python), ``c`` (C or a clear error),
``python`` (always the pure-Python code).
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType

BACKEND_ENV = "LMFS_TOKENIZER_BACKEND"
BACKENDS = ("auto", "c", "python")


def wanted_backend() -> str:
    """The backend asked for by ``LMFS_TOKENIZER_BACKEND`` (``auto`` when unset)."""
    value = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{BACKEND_ENV}={value!r}: expected one of {', '.join(BACKENDS)}")
    return value


def load(name: str, backend: str | None = None) -> ModuleType | None:
    """The compiled module ``lmfs.tokenizer.<name>``, or None when pure Python is wanted or it is not built.

    ``backend`` overrides the environment variable. With ``c``, a module that is not built is an error that says
    how to build it.
    """
    backend = backend or wanted_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend == "python":
        return None
    try:
        module = importlib.import_module(f"lmfs.tokenizer.{name}")
    except ImportError as exc:
        if backend == "c":
            raise ImportError(
                f"the compiled tokenizer module lmfs.tokenizer.{name} is not built ({exc}); reinstall lmfs with a "
                "C compiler and Python headers available (`pip install -e .`), or set "
                f"{BACKEND_ENV}=python"
            ) from exc
        return None
    stale = _stale_reason(module, name)
    if stale is None:
        return module
    if backend == "c":
        raise ImportError(stale)
    warnings.warn(stale + "; using the pure-Python tokenizer code", RuntimeWarning, stacklevel=2)
    return None


def _stale_reason(module: ModuleType, name: str) -> str | None:
    """Why a built module is older than the C sources next to it (an editable install whose sources changed
    after the build, e.g. a checkout), or None. Installed wheels carry no sources and are never stale."""
    built = Path(getattr(module, "__file__", "") or "")
    sources = Path(__file__).with_name("csrc")
    try:
        # lmfs.tokenizer._cNAME is built from csrc/NAME.c and the shared headers
        own = [p for p in sources.iterdir() if p.suffix == ".h" or p.name == f"{name.removeprefix('_c')}.c"]
        newest = max((p.stat().st_mtime for p in own), default=0.0)
        if built.is_file() and newest > built.stat().st_mtime:
            return (
                f"{built.name} is older than the C sources in {sources} (rebuild it: `pip install -e .`, or "
                "`nox -s tests` which reinstalls)"
            )
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------------------------- _ctext

#: character classes of the GPT-2 pre-tokenizer, per code point (the table ``_ctext`` scans with)
CLASS_OTHER, CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE = 0, 1, 2, 3
_CLASS_PATTERNS = ((CLASS_LETTER, r"\p{L}+"), (CLASS_NUMBER, r"\p{N}+"), (CLASS_SPACE, r"\s+"))
_class_table: bytes | None = None


def gpt2_class_table() -> bytes:
    """One byte per code point 0..0x10FFFF: 1 letter (``\\p{L}``), 2 number (``\\p{N}``), 3 whitespace (``\\s``),
    0 anything else, as the ``regex`` module itself classifies them (so the C scanner and
    ``regex.findall(GPT2_PATTERN)`` agree on every code point). Built once per process (~40 ms)."""
    global _class_table
    if _class_table is None:
        import array

        import regex

        every = array.array("I", range(0x110000)).tobytes().decode("utf-32-le", "surrogatepass")
        table = bytearray(0x110000)
        for cls, pattern in _CLASS_PATTERNS:
            for m in regex.finditer(pattern, every):
                if any(table[m.start() : m.end()]):
                    raise RuntimeError(
                        f"code points in {m.start():#x}..{m.end():#x} fall in two GPT-2 classes"
                    )
                table[m.start() : m.end()] = bytes([cls]) * (m.end() - m.start())
        _class_table = bytes(table)
    return _class_table


def load_ctext(backend: str | None = None) -> ModuleType | None:
    """``lmfs.tokenizer._ctext`` ready to scan (its class table installed), or None (see :func:`load`)."""
    mod = load("_ctext", backend)
    if mod is not None and not mod.classes_ready():
        mod.set_classes(gpt2_class_table())
    return mod
