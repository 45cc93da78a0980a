"""A graded test's outcome follows the type of the exception it raised, never words in its report: an
AssertionError that mentions "AdapterMissing" or "NotImplementedError" is a failure, and a NotImplementedError
with any message at all is "not implemented"."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from lmfs.harness.adapter import AdapterMissing, AdapterNotImplemented, AdapterUnavailable
from lmfs.harness.distributed import RankFailed
from lmfs.harness.grade import GradeOptions, grade
from lmfs.harness.pytest_plugin import exception_outcome

ROOT = Path(__file__).resolve().parents[2]


class HalfDone(NotImplementedError):
    pass


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (AdapterMissing("adapter x does not define f()"), "missing"),
        (AdapterNotImplemented("NotImplementedError in adapter f(): "), "not_implemented"),
        (AdapterUnavailable("AdapterMissing: adapter x does not define f()", AdapterMissing), "missing"),
        (AdapterUnavailable("AdapterNotImplemented: f()", AdapterNotImplemented), "not_implemented"),
        (AdapterUnavailable("AdapterMissing: made up elsewhere"), None),  # no kind: the words do not count
        (NotImplementedError(), "not_implemented"),
        (NotImplementedError("a message that says nothing of the sort: AssertionError"), "not_implemented"),
        (HalfDone("subclass"), "not_implemented"),
        (MemoryError(), "memory"),
        (pytest.fail.Exception("Timeout (>2.0s) from pytest-timeout."), "timeout"),
        # the words, without the type that stands for them: ordinary failures
        (AssertionError("AdapterMissing: adapter x does not define f()"), None),
        (AssertionError("NotImplementedError in adapter f()"), None),
        (ValueError("AdapterNotImplemented"), None),
        (RuntimeError("MemoryError: CUDA out of memory"), None),
        (pytest.fail.Exception("Failed: Timeout"), None),
        (pytest.fail.Exception("rank 0 raised: AdapterUnavailable: AdapterMissing: x"), None),
        # a group stands for an outcome when all of its members do
        (ExceptionGroup("two", [NotImplementedError("a"), HalfDone("b")]), "not_implemented"),
        (ExceptionGroup("mixed", [NotImplementedError("a"), ValueError("b")]), None),
        # a rank's exception comes back as "<type>: <message>": the type name counts, not words after it
        (RankFailed("rank 1 failed: AdapterUnavailable: AdapterMissing: adapter x does not define f()\n..."),
         "missing"),
        (RankFailed("rank 0 failed: NotImplementedError: \n..."), "not_implemented"),
        (RankFailed("rank 0 failed: AssertionError: AdapterMissing NotImplementedError MemoryError\n..."), None),
        (RankFailed("rank 0 died (exit code -9)"), None),
    ],
)
def test_outcome_follows_the_exception_type(exc: BaseException, outcome: str | None) -> None:
    assert exception_outcome(exc) == outcome


def test_torch_allocation_failures_are_memory() -> None:
    import torch

    try:
        torch.empty(2**62, dtype=torch.uint8)
    except RuntimeError as exc:  # the CPU allocator raises a plain RuntimeError (no type of its own)
        assert exception_outcome(exc) == "memory"
    else:  # pragma: no cover
        pytest.skip("the allocator granted 4 EiB")
    assert exception_outcome(torch.OutOfMemoryError("CUDA out of memory.")) == "memory"


SPECS = '''
import pytest


class HalfDone(NotImplementedError):
    pass


def test_assertion_mentioning_the_markers(adapter):
    raise AssertionError("AdapterMissing AdapterNotImplemented NotImplementedError MemoryError Failed: Timeout")


def test_not_implemented_with_an_odd_message(adapter):
    raise NotImplementedError("AssertionError: this message is not the point")


def test_not_implemented_subclass(adapter):
    raise HalfDone()


def test_wrapped_not_implemented_is_a_failure(adapter):
    """The traceback text names NotImplementedError (the chained cause), but the test raised a ValueError."""
    try:
        raise NotImplementedError("inner")
    except NotImplementedError as exc:
        raise ValueError("outer") from exc


def test_stub_through_the_adapter(adapter):
    adapter.stub(1)


def test_missing_through_the_adapter(adapter):
    adapter.not_there(1)


@pytest.fixture
def needs_missing(adapter):
    return adapter.not_there(1)


def test_missing_in_a_fixture(needs_missing):
    pass


def test_memory(adapter):
    raise MemoryError()


def test_fail_text_timeout_is_a_failure(adapter):
    pytest.fail("Timeout")


def test_timeout_from_pytest_timeout(adapter):
    pytest.fail("Timeout (>1.0s) from pytest-timeout.")


@pytest.fixture
def broken_fixture():
    raise RuntimeError("NotImplementedError in adapter f()")


def test_error_in_setup(broken_fixture):
    pass


def test_passes(adapter):
    assert adapter.ok(1) == 2
'''

ADAPTER = '''
def stub(x):
    raise NotImplementedError("AssertionError")


def ok(x):
    return x + 1
'''


def test_grader_scores_by_exception_type(tmp_path: Path) -> None:
    """End to end through the grader, on specs outside this checkout (no conftest of lmfs's: the grader loads
    its plugin itself)."""
    specs = tmp_path / "specs" / "kinds"
    specs.mkdir(parents=True)
    (specs / "test_kinds.py").write_text(textwrap.dedent(SPECS))
    adapter = tmp_path / "student" / "adapters.py"  # a folder of its own: the sandbox shows it, not the specs
    adapter.parent.mkdir()
    adapter.write_text(textwrap.dedent(ADAPTER))
    doc = grade(GradeOptions(adapter=str(adapter), specs=tmp_path / "specs", timeout=60, memory_mb=4096,
                             reports_dir=tmp_path, cwd=ROOT))
    outcomes = {t["nodeid"].split("::")[-1]: t["outcome"] for t in doc["tests"]}
    assert outcomes == {
        "test_assertion_mentioning_the_markers": "failed",
        "test_not_implemented_with_an_odd_message": "not_implemented",
        "test_not_implemented_subclass": "not_implemented",
        "test_wrapped_not_implemented_is_a_failure": "failed",
        "test_stub_through_the_adapter": "not_implemented",
        "test_missing_through_the_adapter": "missing",
        "test_missing_in_a_fixture": "missing",
        "test_memory": "memory",
        "test_fail_text_timeout_is_a_failure": "failed",
        "test_timeout_from_pytest_timeout": "timeout",
        "test_error_in_setup": "error",
        "test_passes": "passed",
    }
    assert doc["error"] is None and doc["total"]["earned"] == 1.0 and doc["units"]["kinds"]["possible"] == 12.0
