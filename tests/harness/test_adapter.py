"""Adapter loading and the Adapter view: paths vs module names, missing functions, NotImplementedError stubs."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lmfs.harness.adapter import (
    Adapter,
    AdapterLoadError,
    AdapterMissing,
    AdapterNotImplemented,
    adapter_name,
    load_adapter,
    looks_like_path,
)

STUDENT = Path(__file__).parent / "fixtures" / "student" / "tests" / "adapters.py"


def test_module_names_are_not_paths() -> None:
    assert not looks_like_path("lmfs.adapters")
    assert looks_like_path("adapters.py") and looks_like_path("tests/adapters.py")
    assert load_adapter("lmfs.adapters").__name__ == "lmfs.adapters"
    assert adapter_name("lmfs.adapters") == "lmfs.adapters"
    assert adapter_name(str(STUDENT)) == "student-tests-adapters"


def test_cs336_style_file_imports_its_own_package() -> None:
    module = load_adapter(str(STUDENT))
    assert callable(module.run_linear) and module.layers.__name__ == "cs336_student.layers"


def test_load_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(AdapterLoadError, match="adapter file not found"):
        load_adapter(str(tmp_path / "missing.py"))
    with pytest.raises(AdapterLoadError, match="not found"):
        load_adapter("surely_not_a_module_xyz")
    broken = tmp_path / "adapters.py"
    broken.write_text("raise ValueError('half written')\n")
    with pytest.raises(AdapterLoadError, match="failed to import: ValueError: half written"):
        load_adapter(str(broken))


def test_missing_and_stubbed_functions_escape_broad_except() -> None:
    def stub(x: int) -> int:
        raise NotImplementedError("later")

    ad = Adapter(types.SimpleNamespace(stub=stub, ok=lambda x: x + 1, Cls=int), "fake")  # type: ignore[arg-type]
    assert ad.ok(1) == 2 and ad.Cls is int and ad.has("ok") and not ad.has("nope")
    with pytest.raises(AdapterMissing, match=r"does not define nope\(\)"):
        try:
            ad.nope(1)
        except Exception:  # a spec's broad except must not swallow it
            pytest.fail("AdapterMissing was caught as an Exception")
    with pytest.raises(AdapterNotImplemented, match="later"):
        try:
            ad.stub(1)
        except Exception:
            pytest.fail("a NotImplementedError stub was caught as an Exception")
