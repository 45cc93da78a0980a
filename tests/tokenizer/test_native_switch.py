"""lmfs.tokenizer.native: choosing between the compiled kernels and the pure-Python code."""

from __future__ import annotations

import os
import time

import pytest

from lmfs.tokenizer import native
from tests.tokenizer.helpers import require_native


def test_backend_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.BACKEND_ENV, "python")
    assert native.load("_cmerge") is None
    monkeypatch.setenv(native.BACKEND_ENV, "fortran")
    with pytest.raises(ValueError, match="auto, c, python"):
        native.load("_cmerge")
    with pytest.raises(ValueError, match="auto, c, python"):
        native.load("_cmerge", backend="rust")


def test_a_module_that_is_not_built() -> None:
    assert native.load("_cnothing", backend="auto") is None
    with pytest.raises(ImportError, match=r"not built.*pip install -e"):
        native.load("_cnothing", backend="c")


@pytest.mark.parametrize("name", ["_cmerge", "_ctext"])
def test_built_modules_are_present_in_ci(name: str) -> None:
    """CI installs lmfs with a compiler, so the C kernels must be there (else CI would test only Python)."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced in CI (set CI=1)")
    assert require_native(name) is not None


def test_a_module_older_than_its_source_is_not_used() -> None:
    module = native.load("_cmerge", backend="auto")
    if module is None:
        pytest.skip("_cmerge is not built")
    src = native.Path(native.__file__).with_name("csrc") / "merge.c"
    st = os.stat(src)
    os.utime(src, (st.st_atime, time.time() + 3600))
    try:
        with pytest.warns(RuntimeWarning, match="older than the C sources"):
            assert native.load("_cmerge", backend="auto") is None
        with pytest.raises(ImportError, match="older than the C sources"):
            native.load("_cmerge", backend="c")
    finally:
        os.utime(src, (st.st_atime, st.st_mtime))
    assert native.load("_cmerge", backend="auto") is module
