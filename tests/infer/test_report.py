"""The report section reads the decode groups of a stored run and draws the scaling curve with ratios to HF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmfs.infer.report import section


def _bench(group, impl, batch, median, tokens):
    return {
        "group": group,
        "name": f"test[{impl}]",
        "stats": {"median": median},
        "extra_info": {"impl": impl, "batch": batch, "tokens": tokens, "load": "1.0"},
    }


def test_section_from_a_stored_run(tmp_path: Path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("pandas")
    assert section(tmp_path) is None
    run = tmp_path / "bench" / "cpu-test" / "abc123.json"
    run.parent.mkdir(parents=True)
    benches = [
        _bench("infer-decode-smollm2-b1", "lmfs", 1, 2.0, 32),
        _bench("infer-decode-smollm2-b1", "hf-transformers", 1, 4.0, 32),
        _bench("infer-decode-smollm2-b8", "lmfs", 8, 4.0, 256),
        _bench("infer-decode-smollm2-b8", "hf-transformers", 8, 4.0, 256),
        _bench("serve-32-clients", "lmfs-server", None, 3.0, 1024),
    ]
    run.write_text(json.dumps({"datetime": "2026-01-01T00:00:00", "benchmarks": benches}))
    s = section(tmp_path)
    assert s is not None and "<svg" in s.html and "lmfs / HF" in s.html
    assert "2.00" in s.html  # batch 1: 16 tok/s vs 8 tok/s
    assert "serve-32-clients" in s.html
