"""A student-style adapter written against the spring-2026 names only (tests/parallel/student_2026/adapters.py:
torch, no lmfs) grades through the harness's pytest plugin unchanged: every FSDP spec and the 2026 DDP specs
pass (``pytest specs/parallel --adapter FILE``, in a fresh process, as a student would run it)."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUDENT = Path(__file__).parent / "student_2026" / "adapters.py"
EXPECTED = {
    "test_fsdp_matches_single_process",
    "test_fsdp_gradients_are_the_mean_over_ranks",
    "test_fsdp_gradients_reduce_scattered_during_backward",
    "test_fsdp_gather_full_params",
    "test_fsdp_state_is_sharded",
    "test_fsdp_fp16_compute_keeps_fp32_master",
    "test_ddp_2026_matches_single_process",
    "test_ddp_2026_communication_overlaps_backward",
}


@pytest.mark.slow  # three 2-rank runs in a fresh pytest: about a minute on 2 cores
def test_student_2026_adapter_grades_unchanged(tmp_path: Path) -> None:
    imports = [line for line in STUDENT.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert imports and not any("lmfs" in line for line in imports), imports
    report = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "specs/parallel/test_fsdp.py", "specs/parallel/test_ddp.py",
         "-k", "fsdp or 2026", "-q", "-p", "no:cacheprovider", "--adapter", str(STUDENT),
         f"--junitxml={report}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = any(child.tag in ("failure", "error", "skipped") for child in case)
        outcomes[case.get("name")] = "failed" if failed else "passed"
    assert EXPECTED <= set(outcomes), f"specs not run: {sorted(EXPECTED - set(outcomes))}\n{proc.stdout[-3000:]}"
    bad = {k: v for k, v in outcomes.items() if k in EXPECTED and v != "passed"}
    assert not bad, f"2026 specs not passed by the student adapter: {bad}\n{proc.stdout[-3000:]}"
