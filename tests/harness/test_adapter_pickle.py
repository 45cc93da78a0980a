"""An Adapter crosses process boundaries by its spec (distributed specs spawn ranks that need it)."""

from __future__ import annotations

import pickle
from pathlib import Path

from lmfs.harness.adapter import Adapter, load_adapter

STUDENT = Path(__file__).parent / "fixtures" / "student" / "tests" / "adapters.py"


def test_adapter_pickles_as_its_spec() -> None:
    for spec in ("lmfs.adapters", str(STUDENT)):
        original = Adapter(load_adapter(spec), spec)
        copy = pickle.loads(pickle.dumps(original))
        assert repr(copy) == repr(original)
        assert copy.module.__file__ == original.module.__file__
        assert copy.has("run_linear") == original.has("run_linear")
