"""The lmfs pytest plugin (auto-loaded through the ``pytest11`` entry point).

It gives every suite the same vocabulary:

* ``--adapter SPEC`` and the session-scoped ``adapter`` fixture (default ``lmfs.adapters``);
* the ``points(n)`` and ``unit(name)`` markers of spec tests (unit defaults to the folder under ``specs/``);
* ``gpu`` tests skip without CUDA;
* the ``run_ranks`` fixture: a function on each rank of a CPU gloo process group (distributed specs);
* hypothesis profiles ``dev`` (fast) and ``ci`` (more examples; chosen when ``CI`` is set);
* ``--grade-log FILE``: one JSON line per test phase, read by the grader (:mod:`lmfs.harness.grade`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from lmfs.harness import adapter as _adapter_module
from lmfs.harness.adapter import (
    DEFAULT_ADAPTER,
    Adapter,
    AdapterLoadError,
    AdapterMissing,
    AdapterNotImplemented,
    load_adapter,
)

try:  # hypothesis is a dependency, but keep the plugin importable without it
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.register_profile(
        "ci",
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
        derandomize=True,  # CI explores the same examples every run: a red CI is a real failure, never luck
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
except ImportError:  # pragma: no cover
    pass


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmfs")
    group.addoption("--adapter", default=None, help=f"adapter module or .py file to grade (default {DEFAULT_ADAPTER})")
    group.addoption("--grade-log", default=None, help="append one JSON line per test to this file (used by the grader)")
    group.addoption(
        "--grade-skip", default=None, help="deselect the test ids listed (one per line) in this file (used by the grader)"
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "points(n): points a spec test is worth when graded (default 1)",
        "unit(name): the course unit a spec belongs to (default: its folder under specs/)",
        "gpu: needs CUDA; skipped without it",
        "slow: long-running; excluded from the default suite",
        "triton: runs Triton kernels (interpreter on CPU)",
    ):
        config.addinivalue_line("markers", line)
    spec = config.getoption("--adapter")
    if spec is not None and spec != DEFAULT_ADAPTER:
        try:  # fail the run up front, with a clear message, when the adapter cannot be loaded
            config._lmfs_adapter = Adapter(load_adapter(spec), spec)  # type: ignore[attr-defined]
        except AdapterLoadError as exc:
            raise pytest.UsageError(str(exc)) from None


@pytest.fixture(scope="session")
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """The adapter under test, as an :class:`~lmfs.harness.adapter.Adapter`."""
    cached = getattr(request.config, "_lmfs_adapter", None)
    if cached is not None:
        return cached
    spec = request.config.getoption("--adapter") or DEFAULT_ADAPTER
    try:
        ad = Adapter(load_adapter(spec), spec)
    except AdapterLoadError as exc:
        pytest.fail(str(exc), pytrace=False)
    request.config._lmfs_adapter = ad  # type: ignore[attr-defined]
    return ad


@pytest.fixture(scope="session")
def run_ranks():
    """``run_ranks(fn, world_size, *args, timeout=120)``: ``fn(rank, world_size, *args)`` on each rank of a CPU
    gloo process group (spawned processes); the ranks' return values in rank order. See
    :mod:`lmfs.harness.distributed`."""
    from lmfs.harness.distributed import run_ranks as run

    return run


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _deselect_done(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_file = config.getoption("--grade-skip")
    if not skip_file or not os.path.exists(skip_file):
        return
    with open(skip_file, encoding="utf-8") as fh:
        done = {line.rstrip("\n") for line in fh if line.strip()}
    keep = [it for it in items if it.nodeid not in done]
    gone = [it for it in items if it.nodeid in done]
    if gone:
        config.hook.pytest_deselected(items=gone)
        items[:] = keep


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_done(config, items)
    gpu_items = [it for it in items if it.get_closest_marker("gpu")]
    if gpu_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs CUDA")
        for it in gpu_items:
            it.add_marker(skip)


# ----------------------------------------------------------------------------------------------- grading


def item_unit(item: pytest.Item) -> str:
    marker = item.get_closest_marker("unit")
    if marker is not None and marker.args:
        return str(marker.args[0])
    parts = Path(str(item.path)).parts
    if "specs" in parts:
        i = len(parts) - 1 - parts[::-1].index("specs")
        if i + 2 < len(parts):  # specs/<unit>/test_x.py
            return parts[i + 1]
    return "other"


def item_points(item: pytest.Item) -> float:
    marker = item.get_closest_marker("points")
    return float(marker.args[0]) if marker is not None and marker.args else 1.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> object:
    """Inside a test body a missing adapter function raises a BaseException (so a spec's broad
    ``pytest.raises(Exception)`` cannot mistake it for the expected error); in fixture setup it raises a
    plain Exception, which pytest's fixture cache handles (see :mod:`lmfs.harness.adapter`)."""
    adapter_state.in_test_body = True
    try:
        return (yield)
    finally:
        adapter_state.in_test_body = False


adapter_state = _adapter_module.STATE


def _classify(report: pytest.TestReport, call_excinfo: object | None) -> str:
    if report.passed:
        return "passed"
    if report.skipped:
        return "skipped"
    text = str(report.longrepr) if report.longrepr is not None else ""
    if "AdapterMissing" in text:
        return "missing"
    if "AdapterNotImplemented" in text or "NotImplementedError" in text:
        return "not_implemented"
    if ("Timeout" in text and "pytest-timeout" in text) or "Failed: Timeout" in text:
        return "timeout"
    if "MemoryError" in text or "can't allocate memory" in text or "CUDA out of memory" in text:
        return "memory"
    return "failed" if report.when == "call" else "error"


class _GradeLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "a", buffering=1, encoding="utf-8")
        self._items: dict[str, pytest.Item] = {}

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for it in items:
            self._items[it.nodeid] = it

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.write(
            {
                "event": "collected",
                "items": [
                    {"nodeid": it.nodeid, "unit": item_unit(it), "points": item_points(it)} for it in session.items
                ],
            }
        )

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.write(
                {
                    "event": "collect_error",
                    "nodeid": report.nodeid,
                    "message": str(report.longrepr)[-2000:],
                }
            )

    def pytest_runtest_logstart(self, nodeid: str, location: tuple) -> None:
        it = self._items.get(nodeid)
        self.write(
            {
                "event": "start",
                "nodeid": nodeid,
                "unit": item_unit(it) if it else "other",
                "points": item_points(it) if it else 1.0,
                "time": time.time(),
            }
        )

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # one record per test: the first failing phase, else the call phase
        if report.when == "call" or (report.when == "setup" and not report.passed) or (
            report.when == "teardown" and report.failed
        ):
            it = self._items.get(report.nodeid)
            message = ""
            if report.longrepr is not None and not report.passed:
                message = getattr(report.longrepr, "reprcrash", None)
                message = message.message if message is not None else str(report.longrepr)
                message = str(message)[-2000:]
            self.write(
                {
                    "event": "report",
                    "nodeid": report.nodeid,
                    "when": report.when,
                    "unit": item_unit(it) if it else "other",
                    "points": item_points(it) if it else 1.0,
                    "outcome": _classify(report, None),
                    "duration": report.duration,
                    "message": message,
                }
            )


def pytest_sessionstart(session: pytest.Session) -> None:
    path = session.config.getoption("--grade-log")
    if path:
        session.config.pluginmanager.register(_GradeLog(path), "lmfs-grade-log")


__all__ = ["AdapterMissing", "AdapterNotImplemented", "adapter", "item_points", "item_unit"]
