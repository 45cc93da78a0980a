"""Grading overhead on a small unit: ``lmfs grade`` (the specs in a trusted process, lmfs's adapter in a
bubblewrap sandbox, every call a request) vs the in-process run the grader used to make (a child pytest that
imports the adapter next to the specs: ``pytest -p lmfs.harness.pytest_plugin specs/optim --adapter
lmfs.adapters``).

Group ``grade-optim``: the optim unit's schedule and clipping specs (8 tests, each a few hundred adapter calls).
A round is one whole run from the outside: process start-up, collection, the worker's start-up (torch imported
once in the sandbox, the adapter once per spec module), the tests. The full-grade comparison over every unit is
in ``reports/data/harness/grade_overhead.json`` (a run takes minutes; measured outside pytest-benchmark).
``slow``: a round is ~10-20 s on the 2-core box.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmfs.harness.sandbox import probe

ROOT = Path(__file__).resolve().parents[1]
SELECT = "schedule or clip"

pytestmark = [pytest.mark.slow]


def _grade(tmp: Path) -> None:
    from lmfs.harness.grade import GradeOptions, grade

    doc = grade(GradeOptions(adapter="lmfs.adapters", specs=ROOT / "specs", units=["optim"], timeout=120,
                             memory_mb=4096, reports_dir=tmp, cwd=ROOT, pytest_args=["-k", SELECT]))
    assert doc["total"]["earned"] == doc["total"]["possible"] > 0, doc["total"]


def _in_process() -> None:
    from lmfs.harness.pytest_plugin import PYTEST_ARGS

    res = subprocess.run([sys.executable, "-m", "pytest", *PYTEST_ARGS, str(ROOT / "specs" / "optim"), "-k", SELECT,
                          "--adapter", "lmfs.adapters", "-q", "-p", "no:cacheprovider"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:]


@pytest.mark.skipif(not probe().sandboxed, reason="no working bwrap here")
def test_grade_optim_sandboxed(benchmark, tmp_path: Path) -> None:
    benchmark.group = "grade-optim"
    benchmark.extra_info["impl"] = "lmfs"
    benchmark.pedantic(_grade, args=(tmp_path,), rounds=3, iterations=1, warmup_rounds=0)


def test_grade_optim_in_process_peer(benchmark) -> None:
    benchmark.group = "grade-optim"
    benchmark.extra_info["impl"] = "in-process"
    benchmark.pedantic(_in_process, rounds=3, iterations=1, warmup_rounds=0)
