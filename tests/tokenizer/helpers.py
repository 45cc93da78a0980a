"""Helpers shared by the tokenizer tests."""

from __future__ import annotations

import pytest


def require_native(name: str):
    """The compiled module ``lmfs.tokenizer.<name>`` ready for use; skips when it is not built, except under CI
    (``CI`` set), where a missing build fails: CI installs with a compiler and must test the C kernels."""
    import os

    from lmfs.tokenizer import native

    try:
        return native.load_ctext("c") if name == "_ctext" else native.load(name, backend="c")
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and lmfs.tokenizer.{name} is not built: {exc}")
        pytest.skip(str(exc))
