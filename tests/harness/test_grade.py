"""The grader on the tiny fixture specs: scores of a CS336-style student adapter, and a hostile adapter whose
functions hang in C, abort, segfault, exit and allocate without bound — each a failure, and the run goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmfs.harness.grade import (
    GradeError,
    GradeOptions,
    crash_context,
    grade,
    grade_name,
    merge_grades,
    summarize,
    write_grade,
)
from lmfs.harness.sandbox import probe

FIXTURES = Path(__file__).parent / "fixtures"
SPECS = FIXTURES / "specs_mini" / "specs"
STUDENT = FIXTURES / "student" / "tests" / "adapters.py"
BROKEN = FIXTURES / "broken" / "adapters.py"
ROOT = Path(__file__).resolve().parents[2]


def _by_test(doc: dict) -> dict[str, dict]:
    return {t["nodeid"].split("::")[-1]: t for t in doc["tests"]}


def test_student_adapter_scores(tmp_path: Path) -> None:
    doc = grade(GradeOptions(adapter=str(STUDENT), specs=SPECS, units=["basic"], timeout=60, memory_mb=4096,
                             reports_dir=tmp_path, cwd=ROOT))
    tests = _by_test(doc)
    assert {k: v["outcome"] for k, v in tests.items()} == {
        "test_linear": "passed",
        "test_softmax": "passed",
        "test_silu": "failed",
        "test_embedding": "missing",
        "test_rmsnorm": "not_implemented",
        "test_get_batch_rejects_bad_device": "not_implemented",
        "test_cross_entropy_rejects_bad_targets": "missing",
        "test_tokenizer_from_fixture": "missing",  # the missing function is needed by a fixture
        "test_tokenizer_from_fixture_again[]": "missing",
        "test_tokenizer_from_fixture_again[a]": "missing",
    }
    assert doc["units"]["basic"]["earned"] == 5.0  # linear 3 + softmax 2
    assert doc["units"]["basic"]["possible"] == 15.0
    assert doc["total"]["percent"] == round(100 * 5 / 15, 1)
    assert "get_tokenizer" in tests["test_tokenizer_from_fixture_again[a]"]["message"]
    assert doc["restarts"] == 0 and doc["error"] is None
    assert "run_embedding" in tests["test_embedding"]["message"]
    path = write_grade(doc, tmp_path)
    assert path == tmp_path / "grade" / f"{grade_name(str(STUDENT))}.json"
    assert path.name.startswith("student-tests-adapters-")
    assert doc["sandbox"]["sandboxed"] is probe().sandboxed
    assert json.loads(path.read_text())["total"]["earned"] == 5.0


def test_hostile_adapter_each_failure_recorded_and_run_goes_on(tmp_path: Path) -> None:
    doc = grade(GradeOptions(adapter=str(BROKEN), specs=SPECS, units=["robust"], timeout=2, memory_mb=600,
                             reports_dir=tmp_path, cwd=ROOT))
    tests = _by_test(doc)
    outcomes = {k: v["outcome"] for k, v in tests.items()}
    assert outcomes == {
        "test_hang_in_c": "timeout",
        "test_abort": "crashed",
        "test_segfault": "crashed",
        "test_hard_exit": "crashed",
        "test_unbounded_memory": "memory",
        "test_unbounded_shared_memory": "memory",
        "test_correct_after_crashes": "passed",
        "test_missing": "missing",
    }
    assert "SIGABRT" in tests["test_abort"]["message"]
    assert "SIGSEGV" in tests["test_segfault"]["message"]
    assert "code 7" in tests["test_hard_exit"]["message"]
    assert "MemoryError" in tests["test_unbounded_memory"]["message"]  # RLIMIT_DATA: fails inside the test
    assert "memory cap" in tests["test_unbounded_shared_memory"]["message"]  # RSS watchdog: process killed
    # the adapter's crashes end only its host: the spec process restarts just for the hang (pytest-timeout
    # ends it) and for the shared-memory runaway (the RSS watchdog kills the whole tree)
    assert doc["restarts"] == 2 and doc["error"] is None
    assert [c["nodeid"].rsplit("/", 1)[-1] for c in doc["collect_errors"]] == ["test_mini_robust_import.py"]
    assert "not_a_module_anyone_has" in doc["collect_errors"][0]["message"]
    assert doc["total"]["earned"] == 3.0 and doc["total"]["possible"] == 11.0


def test_missing_adapter_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GradeError, match="adapter file not found"):
        grade(GradeOptions(adapter=str(tmp_path / "nope.py"), specs=SPECS, reports_dir=tmp_path, cwd=ROOT))


def test_adapter_that_fails_to_import_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "adapters.py"
    bad.write_text("import not_a_real_module_xyz\n")
    with pytest.raises(GradeError, match=r"failed to import.*not_a_real_module_xyz"):
        grade(GradeOptions(adapter=str(bad), specs=SPECS, reports_dir=tmp_path, cwd=ROOT))
    with pytest.raises(GradeError, match="not found"):
        grade(GradeOptions(adapter="no_such_module_abc.adapters", specs=SPECS, reports_dir=tmp_path, cwd=ROOT))


def test_unknown_unit_and_specs_folder(tmp_path: Path) -> None:
    with pytest.raises(GradeError, match=r"unknown unit.*available: basic, robust"):
        grade(GradeOptions(adapter=str(STUDENT), specs=SPECS, units=["nope"], reports_dir=tmp_path, cwd=ROOT))
    with pytest.raises(GradeError, match="specs folder not found"):
        grade(GradeOptions(adapter=str(STUDENT), specs=tmp_path / "x", reports_dir=tmp_path, cwd=ROOT))


def test_cli_nonexistent_adapter_exits_nonzero_with_message(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lmfs", "grade", "--adapter", str(tmp_path / "missing.py"), "--specs", str(SPECS),
         "--reports-dir", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert res.returncode == 2
    assert "adapter file not found" in res.stderr
    assert not (tmp_path / "grade").exists()


def test_summarize_excludes_skipped_from_possible() -> None:
    tests = [
        {"unit": "a", "points": 2.0, "earned": 2.0, "outcome": "passed"},
        {"unit": "a", "points": 3.0, "earned": 0.0, "outcome": "timeout"},
        {"unit": "b", "points": 5.0, "earned": 0.0, "outcome": "skipped"},
    ]
    units, total = summarize(tests)
    assert units["a"] == {"earned": 2.0, "possible": 5.0, "tests": 2, "passed": 1, "failed": 1, "skipped": 0,
                          "percent": 40.0}
    assert units["b"]["possible"] == 0.0 and units["b"]["percent"] is None
    assert total["earned"] == 2.0 and total["possible"] == 5.0 and total["skipped"] == 1


def test_grade_names_never_collide_for_two_students(tmp_path: Path) -> None:
    a = tmp_path / "alice" / "hw" / "tests" / "adapters.py"
    b = tmp_path / "bob" / "hw" / "tests" / "adapters.py"
    assert grade_name(str(a)) != grade_name(str(b))
    assert grade_name(str(a)) == grade_name(str(a))
    assert grade_name("lmfs.adapters") == "lmfs.adapters"


def test_per_unit_runs_merge_into_one_grade(tmp_path: Path) -> None:
    def doc(unit: str, earned: float, sandboxed: bool = True) -> dict:
        tests = [{"nodeid": f"specs/{unit}/test_x.py::t", "unit": unit, "points": 2.0, "earned": earned,
                  "outcome": "passed" if earned else "failed", "duration": 0.1, "message": ""}]
        units, total = summarize(tests)
        return {"adapter": "/x/adapters.py", "name": "x", "units_run": [unit], "tests": tests, "units": units,
                "total": total, "created": unit, "sandbox": {"sandboxed": sandboxed}}

    write_grade(doc("optim", 2.0), tmp_path)
    path = write_grade(doc("train", 0.0), tmp_path)
    merged = json.loads(path.read_text())
    assert set(merged["units"]) == {"optim", "train"}
    assert merged["total"]["earned"] == 2.0 and merged["total"]["possible"] == 4.0
    path = write_grade(doc("optim", 0.0, sandboxed=False), tmp_path)  # a rerun of optim replaces optim only
    merged = json.loads(path.read_text())
    assert merged["total"]["earned"] == 0.0 and merged["total"]["possible"] == 4.0
    assert merged["sandbox"]["sandboxed"] is False and len(merged["runs"]) == 3
    assert merge_grades(doc("a", 2.0), doc("a", 0.0))["total"]["earned"] == 0.0


def test_crash_context_picks_the_crashing_thread_frame() -> None:
    out = (
        "collected 3 items\nFatal Python error: Segmentation fault\n\nThread 0x1 (most recent call first):\n"
        '  File "/x/threading.py", line 331 in wait\n\nCurrent thread 0x2 (most recent call first):\n'
        '  File "/s/adapters.py", line 9 in negate\n  File "/s/test_x.py", line 3 in test_n\n'
    )
    assert crash_context(out) == 'Fatal Python error: Segmentation fault | at File "/s/adapters.py", line 9 in negate'
    assert crash_context("a\nb\n  File x\nc\nd\n") == "b | c | d"


def test_missing_function_needed_by_a_real_spec_fixture_is_scored_missing(tmp_path: Path) -> None:
    """The tokenizer specs build their tokenizer in module-scoped fixtures; an adapter without
    get_tokenizer must score each of those tests as "missing" (not a bare fixture error)."""
    doc = grade(GradeOptions(adapter=str(STUDENT), specs=ROOT / "specs", units=["tokenizer"], timeout=60,
                             memory_mb=4096, reports_dir=tmp_path, cwd=ROOT, pytest_args=["-k", "round_trip"]))
    outcomes = {t["nodeid"]: t["outcome"] for t in doc["tests"]}
    assert outcomes, "no tokenizer spec ran"
    assert set(outcomes.values()) <= {"missing", "skipped"}, outcomes
