"""The lmfs pytest plugin: ``pytest_plugins = ["lmfs.harness.pytest_plugin"]`` or ``-p lmfs.harness.pytest_plugin``.

It is never loaded by merely installing lmfs (there is no ``pytest11`` entry point): the conftests at the top of
``specs/``, ``tests/`` and ``benchmarks/`` load it for runs in this checkout, and the grader and ``lmfs bench
run`` pass ``-p`` (:data:`PYTEST_ARGS`) to their child pytest, so other projects' pytest runs in the same
environment are left alone. Once loaded it gives every suite the same vocabulary:

* ``--adapter SPEC`` and the session-scoped ``adapter`` fixture (default ``lmfs.adapters``);
* the ``points(n)`` and ``unit(name)`` markers of spec tests (unit defaults to the folder under ``specs/``);
* ``gpu`` tests skip without CUDA;
* the ``run_ranks`` fixture: a function on each rank of a CPU gloo process group (distributed specs);
* the ``run_colocated`` fixture: the same, for rank code that must run in the process holding the adapter
  (in the grading worker's sandbox under ``lmfs grade``), returning plain data; and ``grading_seed``, the seed
  of inputs a submission must not know in advance (0 under plain pytest, fresh for every graded run);
* hypothesis profiles ``dev`` (fast) and ``ci`` (more examples; chosen when ``CI`` is set), loaded when pytest
  configures (``--hypothesis-profile`` still wins), not when this module is imported;
* ``--grade-log FILE``: one JSON line per test phase, read by the grader (:mod:`lmfs.harness.grade`). A test's
  outcome there follows the type of the exception it raised (:func:`exception_outcome`), never the report text.
"""

from __future__ import annotations

import json
import os
import re
import sys
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
    AdapterUnavailable,
    load_adapter,
)

# What a child pytest that needs this plugin gets: the plugin by module name, and the entry-point name an older
# lmfs install (or a stale lmfs.egg-info in the checkout) may still register it under blocked, so it is loaded
# once (pluggy refuses one module under two names).
PYTEST_ARGS = ("-p", "no:lmfs", "-p", __name__)


def _load_hypothesis_profiles() -> None:
    try:  # hypothesis is a harness dependency, but keep the plugin usable without it
        from hypothesis import HealthCheck, settings
    except ImportError:  # pragma: no cover
        return
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


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmfs")
    group.addoption("--adapter", default=None, help=f"adapter module or .py file to grade (default {DEFAULT_ADAPTER})")
    group.addoption("--grade-log", default=None, help="append one JSON line per test to this file (used by the grader)")
    group.addoption(
        "--grade-skip", default=None, help="deselect the test ids listed (one per line) in this file (used by the grader)"
    )
    group.addoption(
        "--grade-worker", default=None,
        help="JSON settings of the worker that hosts the adapter (used by the grader: the adapter is never "
        "imported in this process)",
    )


@pytest.hookimpl(tryfirst=True)  # before hypothesis's own plugin, so that --hypothesis-profile wins
def pytest_configure(config: pytest.Config) -> None:
    _load_hypothesis_profiles()
    for line in (
        "points(n): points a spec test is worth when graded (default 1)",
        "unit(name): the course unit a spec belongs to (default: its folder under specs/)",
        "gpu: needs CUDA; skipped without it",
        "slow: long-running; excluded from the default suite",
        "triton: runs Triton kernels (interpreter on CPU)",
        "colocated: its rank code runs beside the adapter (run_colocated: in the grading worker's sandbox under "
        "lmfs grade) to observe collectives, dtypes and memory; the verdict is decided on the plain data it returns",
    ):
        config.addinivalue_line("markers", line)
    spec = config.getoption("--adapter")
    if config.getoption("--grade-worker"):
        return  # the adapter lives in the worker; nothing of it is imported here
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
    session = _worker_session(request.config)
    if session is not None:
        from lmfs.harness.remote import RemoteAdapter

        request.config._lmfs_adapter = RemoteAdapter(session)  # type: ignore[attr-defined]
        return request.config._lmfs_adapter  # type: ignore[attr-defined]
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


@pytest.fixture(scope="session")
def run_colocated(adapter):
    """``run_colocated(fn, world_size, *args, rank_args=None, timeout=120)``: ``fn(rank, world_size, adapter,
    *args, *rank_args[rank])`` on each rank of a CPU gloo group, in the process that holds the adapter (spawned
    ranks under ``pytest --adapter``; hosts in the sandboxed worker under ``lmfs grade``, where ``fn`` travels
    by value); the ranks' results, checked to be plain data, in rank order. Decide the verdict from them here,
    recomputing what can be recomputed. See :func:`lmfs.harness.distributed.run_colocated`."""
    from lmfs.harness.distributed import run_colocated as run

    def call(fn, world_size: int, *args, rank_args=None, timeout: float = 120.0):
        return run(fn, world_size, adapter, *args, rank_args=rank_args, timeout=timeout)

    return call


@pytest.fixture(scope="session")
def grading_seed(request: pytest.FixtureRequest) -> int:
    """A seed for a spec's inputs: 0 under plain pytest (a failure reproduces), drawn afresh from the OS for
    every run of ``lmfs grade`` (so results recorded from another implementation cannot be replayed)."""
    if request.config.getoption("--grade-worker"):
        return int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return 0


def _worker_session(config: pytest.Config):
    """The graded run's worker session (started on first use), or None outside ``lmfs grade``."""
    path = config.getoption("--grade-worker")
    if not path:
        return None
    session = getattr(config, "_lmfs_worker", None)
    if session is None:
        from lmfs.harness.remote import WorkerSession
        from lmfs.harness.sandbox import SandboxInfo

        with open(path, encoding="utf-8") as fh:
            conf = json.load(fh)
        info = SandboxInfo(conf["sandbox"]["mode"], conf["sandbox"].get("tool"), conf["sandbox"].get("reason"))
        session = WorkerSession(conf["adapter"], scratch=Path(conf["scratch"]), sandbox=info,
                                readonly=[Path(p) for p in conf["readonly"]], sys_path=conf["sys_path"],
                                memory_mb=conf.get("memory_mb"), tmp_mb=int(conf.get("tmp_mb", 512)),
                                threads=conf.get("threads"))
        config._lmfs_worker = session  # type: ignore[attr-defined]
    return session


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the worker and its first host before the first test, so that their start-up (importing torch,
    then the adapter) counts against no test's timeout."""
    worker = _worker_session(session.config)
    if worker is not None and session.items:
        _warm(worker)


def _warm(worker) -> None:
    try:
        worker.get_peer()
    except Exception:  # the first test that uses the adapter reports it
        worker.close_host()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """After each test, nothing the adapter started survives but its host; after a module's last test the
    host goes too (module-scoped fixtures may hold its objects until then)."""
    try:
        return (yield)
    finally:
        session = getattr(item.config, "_lmfs_worker", None)
        if session is not None:
            same_module = nextitem is not None and getattr(nextitem, "module", None) is getattr(item, "module", 0)
            if not same_module:
                session.close_host()
            session.reap(keep_host=same_module)
            if not same_module and nextitem is not None:
                _warm(session)  # the next module's host, while no test is timed


def pytest_unconfigure(config: pytest.Config) -> None:
    session = getattr(config, "_lmfs_worker", None)
    if session is not None:
        session.close()


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


def _timeout_failure(exc: BaseException) -> bool:
    """pytest-timeout (signal method) stops a test with ``pytest.fail(PYTEST_FAILURE_MESSAGE % timeout)``: a
    ``Failed`` of its own making is the only sign it leaves, so its fixed message format identifies it."""
    if not isinstance(exc, pytest.fail.Exception):
        return False
    try:
        from pytest_timeout import PYTEST_FAILURE_MESSAGE
    except ImportError:  # pragma: no cover
        PYTEST_FAILURE_MESSAGE = "Timeout (>%ss) from pytest-timeout."
    pattern = re.escape(PYTEST_FAILURE_MESSAGE).replace("%s", ".+")
    return re.fullmatch(pattern, str(exc.msg)) is not None


def _torch_out_of_memory(exc: BaseException) -> bool:
    """torch's allocators: ``torch.OutOfMemoryError`` (CUDA), and on the CPU a plain ``RuntimeError`` from
    ``DefaultCPUAllocator`` (it has no type of its own; its message names the allocator)."""
    torch = sys.modules.get("torch")  # a torch error can only come from a process that imported torch
    if torch is None or not isinstance(exc, RuntimeError):
        return False
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return "DefaultCPUAllocator: can't allocate memory" in str(exc)


# A rank of ``run_ranks`` sends back "<ExceptionType>: <message>" (a process boundary: the exception object
# stays in the rank); these type names stand for the same outcomes as the types themselves.
_RANK_TYPE_OUTCOMES = {
    "AdapterMissing": "missing",
    "AdapterNotImplemented": "not_implemented",
    "NotImplementedError": "not_implemented",
    "MemoryError": "memory",
    "OutOfMemoryError": "memory",
}
_RANK_FAILED = re.compile(r"rank \d+ failed: (\w+): (?:(\w+): )?")


def _rank_outcome(exc: BaseException) -> str | None:
    from lmfs.harness.distributed import RankFailed

    if not isinstance(exc, RankFailed):
        return None
    m = _RANK_FAILED.match(str(exc))
    if m is None:  # a rank that died or hung
        return None
    name, inner = m.groups()
    if name == AdapterUnavailable.__name__:  # its message starts with the name of the kind it stands for
        name = inner or ""
    return _RANK_TYPE_OUTCOMES.get(name)


def exception_outcome(exc: BaseException) -> str | None:
    """The grading outcome that an exception's *type* stands for: ``missing`` (:class:`AdapterMissing`),
    ``not_implemented`` (:class:`AdapterNotImplemented`, any ``NotImplementedError``), ``memory``
    (``MemoryError``, torch's allocation errors), ``timeout`` (pytest-timeout); None for an ordinary failure.
    A group (e.g. hypothesis reporting several distinct errors) stands for an outcome when all its members do."""
    if isinstance(exc, BaseExceptionGroup):
        kinds = {exception_outcome(e) for e in exc.exceptions}
        return kinds.pop() if len(kinds) == 1 else None
    if isinstance(exc, AdapterUnavailable):  # what AdapterMissing / AdapterNotImplemented become in a fixture
        kind = exc.kind
        if kind is not None and issubclass(kind, AdapterMissing):
            return "missing"
        if kind is not None and issubclass(kind, AdapterNotImplemented):
            return "not_implemented"
        return None
    if isinstance(exc, AdapterMissing):
        return "missing"
    from lmfs.harness.worker import WorkerDied

    if isinstance(exc, WorkerDied):  # raised by the trusted side when the adapter's process ended
        return exc.kind if exc.kind in ("crashed", "memory") else "crashed"
    if isinstance(exc, (AdapterNotImplemented, NotImplementedError)):
        return "not_implemented"
    if isinstance(exc, MemoryError) or _torch_out_of_memory(exc):
        return "memory"
    if _timeout_failure(exc):
        return "timeout"
    return _rank_outcome(exc)


def report_outcome(report: pytest.TestReport, excinfo: pytest.ExceptionInfo[BaseException] | None) -> str:
    """A test phase's grading outcome: passed / skipped as pytest says, else what the exception's type stands
    for (:func:`exception_outcome`), else ``failed`` (in the test body) or ``error`` (in setup / teardown)."""
    if report.passed:
        return "passed"
    if report.skipped:
        return "skipped"
    kind = exception_outcome(excinfo.value) if excinfo is not None else None
    return kind or ("failed" if report.when == "call" else "error")


class _GradeLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "a", buffering=1, encoding="utf-8")
        self._items: dict[str, pytest.Item] = {}

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
        """Classify the phase while its exception is at hand (the report keeps only its text)."""
        report = yield
        report.lmfs_outcome = report_outcome(report, call.excinfo)  # type: ignore[attr-defined]
        report.lmfs_exception = call.excinfo.typename if call.excinfo is not None else None  # type: ignore[attr-defined]
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for it in items:
            self._items[it.nodeid] = it

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.write(
            {
                "event": "collected",
                "items": [
                    {"nodeid": it.nodeid, "unit": item_unit(it), "points": item_points(it),
                     "static_skip": _static_skip(it)}
                    for it in session.items
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
                    "outcome": _logged_outcome(report),
                    "exception": getattr(report, "lmfs_exception", None),
                    "duration": report.duration,
                    "message": message,
                }
            )


def _static_skip(item: pytest.Item) -> str | None:
    """Why a test is skipped before it runs (a ``skip`` marker, ``skipif`` true at collection, no CUDA for a
    ``gpu`` test), else None. Only these leave the total: they are known before any adapter code runs."""
    for mark in item.iter_markers("skip"):
        return str(mark.kwargs.get("reason") or (mark.args[0] if mark.args else "skipped"))
    for mark in item.iter_markers("skipif"):
        cond = mark.args[0] if mark.args else mark.kwargs.get("condition")
        if isinstance(cond, bool) and cond:
            return str(mark.kwargs.get("reason") or "skipif")
    return None


def _logged_outcome(report: pytest.TestReport) -> str:
    outcome = getattr(report, "lmfs_outcome", None)  # set when pytest made the report (see makereport above)
    return outcome if outcome is not None else report_outcome(report, None)


def pytest_sessionstart(session: pytest.Session) -> None:
    path = session.config.getoption("--grade-log")
    if path:
        session.config.pluginmanager.register(_GradeLog(path), "lmfs-grade-log")


__all__ = [
    "PYTEST_ARGS",
    "AdapterMissing",
    "AdapterNotImplemented",
    "adapter",
    "exception_outcome",
    "item_points",
    "item_unit",
    "report_outcome",
]
