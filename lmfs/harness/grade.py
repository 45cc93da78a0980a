"""Grading an adapter against the specs, safely, and so that no submission can forge its grade.

Three kinds of process: this one (the grader), a child ``pytest`` that runs the specs and decides every verdict
(trusted: it never imports the submission), and a worker in a sandbox (:mod:`lmfs.harness.sandbox`) whose hosts
import the adapter and answer the specs' calls (:mod:`lmfs.harness.remote`, :mod:`lmfs.harness.worker`). The
child loads lmfs's plugin explicitly (``-p``: the specs may lie outside this checkout) and writes one JSON line
per test phase (``--grade-log``, a file the worker cannot see). The first child's collection fixes the tests and
their points before any submission code runs; a test that never reports is a failure (``not_run``); a skip can
only come from the specs' own code (no CUDA, a missing optional peer, a parameter combination a spec does not
cover: the adapter's ``pytest.skip`` arrives as a plain exception and fails), so every submission graded on one
machine has the same total. This process watches the child:

* **timeouts** — pytest-timeout (thread method) stops a slow test inside the child; if the child cannot act
  (a C call holding the GIL), the watcher kills the whole process group after ``1.5 x timeout + 2`` s;
* **memory** — the child runs under ``RLIMIT_DATA = memory_mb`` (a runaway allocation raises MemoryError /
  a torch allocation error inside the test), and the watcher kills it if its RSS passes ``1.25 x memory_mb``;
* **crashes** — when the child dies (signal, ``os._exit``, kill), the test that had started without a
  report is recorded as failed with the reason, and a new child runs the tests not yet recorded.

* **the adapter's crashes** — a host that dies (signal, ``os._exit``) fails the test it was in with the reason;
  the spec process goes on, and the next call gets a new host.

A missing adapter function (``AdapterMissing``) or ``NotImplementedError`` is a zero for that test; the child
tells these apart by the type of the exception a test raised, not by the text of its report.
The result goes to ``reports/grade/<name>.json`` (:func:`grade_name`: a user-given name, or the adapter's file
name with a hash of its resolved path), and a run on some units merges into the grade of earlier runs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfs.atomic import write_json_atomic
from lmfs.harness.adapter import adapter_name, looks_like_path
from lmfs.harness.sandbox import SandboxInfo, WorkerView, probe, submission_view, worker_command

FAILED_OUTCOMES = ("failed", "error", "missing", "not_implemented", "timeout", "memory", "crashed", "not_run")


class GradeError(RuntimeError):
    """Grading could not run (bad adapter, bad specs path, a child that dies before any test)."""


@dataclass
class GradeOptions:
    adapter: str = "lmfs.adapters"
    specs: Path = Path("specs")
    units: list[str] | None = None
    timeout: float = 300.0
    memory_mb: int | None = 8192
    pytest_args: list[str] = field(default_factory=list)
    reports_dir: Path = Path("reports")
    cwd: Path | None = None
    echo: Callable[[str], None] | None = None  # progress lines (None: silent)
    sandbox: str = "auto"  # auto: bwrap when it works here; bwrap: refuse to grade without it; none: fallback
    tmp_mb: int = 512  # the worker's private /tmp
    name: str | None = None  # the grade's file name (default: grade_name(adapter))
    threads: int | None = None  # torch threads in the adapter's process (default: torch's own choice)


def spec_paths(specs: Path, units: list[str] | None) -> list[Path]:
    """The folders to run: ``specs/<unit>`` for each requested unit (all of specs/ when none)."""
    specs = Path(specs)
    if not specs.is_dir():
        raise GradeError(f"specs folder not found: {specs} (pass --specs DIR)")
    if not units:
        return [specs.resolve()]
    available = sorted(p.name for p in specs.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    missing = [u for u in units if u not in available]
    if missing:
        raise GradeError(f"unknown unit(s) {', '.join(missing)} in {specs}; available: {', '.join(available)}")
    return [(specs / u).resolve() for u in units]


def _limit_memory(memory_mb: int | None) -> Callable[[], None] | None:
    if not memory_mb:
        return None
    limit = int(memory_mb) * 2**20

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    return apply


def _tree_rss(pid: int, include_root: bool = True) -> int:
    """Resident bytes of ``pid``'s process tree; ``include_root=False`` leaves out ``pid`` itself (the trusted
    spec process, when the submission runs in worker processes below it)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss if include_root else 0
        for child in proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _tail(path: Path, max_bytes: int = 64_000) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def crash_context(output: str) -> str:
    """The useful part of a dead child's output: faulthandler's ``Fatal Python error`` line and the innermost
    frame, else the last few lines that are not stack frames."""
    lines = output.rstrip().splitlines()
    fatal = [i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error:")]
    if fatal:
        i = fatal[-1]
        cur = next((j for j in range(i, len(lines)) if lines[j].startswith("Current thread")), i)
        frame = next((ln.strip() for ln in lines[cur:] if ln.startswith("  File ")), "")
        return " | ".join(x for x in (lines[i].strip(), f"at {frame}" if frame else "") if x)
    rest = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("  File ") and not ln.startswith("~")]
    return " | ".join(rest[-3:])


def _child_env() -> dict[str, str]:
    """The caller's environment, with the caller's working folder importable (``--adapter my_pkg.adapters``
    run from a user's project), since the child runs in the lmfs checkout."""
    paths = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(paths))


def preflight(opts: GradeOptions, view: WorkerView | None = None, info: SandboxInfo | None = None) -> None:
    """Import the adapter once in the worker's sandbox (under the same limits); raise :class:`GradeError` with
    a clear message when it does not exist, fails to import, hangs or crashes."""
    if looks_like_path(opts.adapter) and not Path(opts.adapter).is_file():
        raise GradeError(f"adapter file not found: {opts.adapter} (pass a .py file or an importable module name)")
    if view is None or info is None:
        info = info or probe(opts.sandbox)
        view = _worker_view(opts, Path(tempfile.mkdtemp(prefix="lmfs-preflight-")))
    from lmfs.harness.sandbox import fallback_env

    cmd = worker_command(view, info, "check", opts.adapter, *view.sys_path)
    limit = max(opts.timeout, 120)
    try:
        with open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(cmd, stdin=devnull, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    cwd=str(view.scratch), env=None if info.sandboxed else fallback_env(view),
                                    preexec_fn=_limit_memory(opts.memory_mb), start_new_session=True)
            try:
                out, _ = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate()
                raise GradeError(f"adapter {opts.adapter} did not finish importing within {limit:.0f} s") from None
            finally:
                _kill_group(proc)  # nothing it started outlives the check
    except OSError as exc:
        raise GradeError(f"cannot start the grading worker: {exc}") from None
    text = out[-64_000:].decode("utf-8", "replace")
    res = subprocess.CompletedProcess(cmd, proc.returncode, "", text)
    if res.returncode == 0:
        return
    if res.returncode < 0:
        sig = signal.Signals(-res.returncode).name
        raise GradeError(f"adapter {opts.adapter} crashed the interpreter while importing ({sig})")
    detail = res.stderr.strip().splitlines()
    msg = detail[-1] if detail else f"exit {res.returncode}"
    top = opts.adapter.split(".")[0]
    if not looks_like_path(opts.adapter) and msg.startswith("ModuleNotFoundError") and repr(top) in msg:
        raise GradeError(f"adapter module {opts.adapter!r} not found ({msg}); pass a .py path or an importable name")
    raise GradeError(f"adapter {opts.adapter} failed to import: {msg}")


def _shared_data_dir(opts: GradeOptions) -> Path | None:
    """The shared data catalogue specs pass paths into (``$LMFS_SHARED_DIR`` or ``<checkout>/../shared``)."""
    env = os.environ.get("LMFS_SHARED_DIR")
    base = Path(opts.cwd or Path.cwd()).resolve()
    for cand in ([Path(env)] if env else []) + [base.parent / "shared", Path(__file__).resolve().parents[3] / "shared"]:
        if cand.is_dir():
            return cand.resolve()
    return None


def _worker_view(opts: GradeOptions, scratch: Path) -> WorkerView:
    readonly, sys_path = submission_view(opts.adapter, opts.cwd)
    shared = _shared_data_dir(opts)
    if shared is not None:
        readonly.append(shared)
    specs = Path(opts.specs).resolve()
    for folder in readonly:  # a submission folder that holds the specs would show them
        if folder == specs or folder in specs.parents:
            raise GradeError(f"the adapter's folder {folder} contains the specs ({specs}); move the adapter "
                             "into a folder of its own")
    return WorkerView(scratch=scratch, readonly=readonly, sys_path=sys_path, tmp_mb=opts.tmp_mb, shared=shared)


@dataclass
class _Child:
    """What one child pytest run left: records by nodeid, the test it died in, and why."""

    collected: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    collect_errors: list[dict[str, Any]] = field(default_factory=list)
    current: dict[str, Any] | None = None
    returncode: int = 0
    killed_for: str | None = None
    tail: str = ""  # the end of the child's output
    collected_done: bool = False


def _consume(line: str, child: _Child) -> None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return  # a torn last line of a killed child
    if not isinstance(rec, dict):
        return
    event = rec.get("event")
    if event == "collected":
        if child.collected_done:
            return  # one collection per child: what the spec process found before any test ran
        child.collected_done = True
        for it in rec.get("items", []):
            child.collected[it["nodeid"]] = it
    elif event == "collect_error":
        child.collect_errors.append(rec)
    elif event == "start":
        child.current = rec
    elif event == "report":
        prev = child.records.get(rec["nodeid"])
        if prev is None or prev["outcome"] in ("passed", "skipped"):
            child.records[rec["nodeid"]] = rec  # keep the first failing phase
        if child.current and child.current.get("nodeid") == rec["nodeid"] and rec.get("when") != "setup":
            child.current = None
        elif rec.get("when") == "setup" and rec["outcome"] != "passed":
            child.current = None


PROGRESS_EVERY = 15.0  # seconds between progress lines on stderr


def _run_child(opts: GradeOptions, paths: list[Path], work: Path, attempt: int,
               worker_conf: Path | None = None) -> _Child:
    from lmfs.harness.pytest_plugin import PYTEST_ARGS  # imports pytest: only where a child pytest runs

    log = work / f"grade-log-{attempt}.jsonl"
    out = work / f"pytest-{attempt}.out"
    skip = work / "done.txt"
    cmd = [
        sys.executable, "-m", "pytest", *PYTEST_ARGS, *map(str, paths),
        "--adapter", opts.adapter,
        "--grade-log", str(log),
        "--grade-skip", str(skip),
        "--timeout", str(opts.timeout), "--timeout-method", "thread",
        "--continue-on-collection-errors",
        "-p", "no:cacheprovider", "-q", "-rN",
        *opts.pytest_args,
    ]
    if worker_conf is not None:
        cmd += ["--grade-worker", str(worker_conf), "--basetemp", str(work / "scratch" / f"pytest-{attempt}")]
    env = _child_env()
    if worker_conf is not None:  # the specs' own temporary files must be where the worker can read them
        tmpdir = work / "scratch" / "tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmpdir)
        shared = _shared_data_dir(opts)
        if shared is not None:
            env["LMFS_WORKER_SHARED"] = str(shared)
    hard_timeout = 1.5 * opts.timeout + 2.0
    rss_cap = int(1.25 * opts.memory_mb * 2**20) if opts.memory_mb else None
    # The cap is the submission's: when it runs in worker processes, the trusted spec process is not counted
    hosted_here = worker_conf is None
    child = _Child()
    with open(out, "wb") as out_fh:
        proc = subprocess.Popen(
            cmd, cwd=opts.cwd, stdout=out_fh, stderr=subprocess.STDOUT, env=env,
            preexec_fn=_limit_memory(opts.memory_mb), start_new_session=True,
        )
        buf = ""
        pos = 0
        started_at = None
        last_event = time.monotonic()
        polls = 0  # RSS is sampled every 4th poll (0.2 s): RLIMIT_DATA does the fine-grained work
        shown_at = time.monotonic()  # a progress line every PROGRESS_EVERY seconds: a full grade takes minutes
        while True:
            if time.monotonic() - shown_at > PROGRESS_EVERY and child.collected:
                shown_at = time.monotonic()
                now = child.current.get("nodeid", "") if child.current else ""
                print(f"  graded {len(child.records)}/{len(child.collected)} tests"
                      + (f" (running {now})" if now else ""), file=sys.stderr, flush=True)
            rc = proc.poll()
            if log.exists():
                with open(log, encoding="utf-8", errors="replace") as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                    pos = fh.tell()
                buf += chunk
                *lines, buf = buf.split("\n")
                if lines:
                    last_event = time.monotonic()
                for line in lines:
                    before = child.current
                    _consume(line, child)
                    if child.current is not before:
                        started_at = time.monotonic() if child.current else None
            if rc is not None:
                if buf.strip():
                    _consume(buf, child)
                break
            if child.current and started_at and time.monotonic() - started_at > hard_timeout:
                child.killed_for = "timeout"
                _kill_group(proc)
            elif time.monotonic() - last_event > hard_timeout + 120:
                child.killed_for = "stalled"  # silent outside any test (collection, fixture teardown)
                _kill_group(proc)
            elif rss_cap and (polls := polls + 1) % 4 == 0 and _tree_rss(proc.pid, hosted_here) > rss_cap:
                child.killed_for = "memory"
                _kill_group(proc)
            time.sleep(0.05)
        child.returncode = proc.returncode
    if child.current is not None:
        child.current["elapsed"] = max(0.0, time.time() - float(child.current.get("time", time.time())))
    child.tail = _tail(out)
    return child


def _death_record(child: _Child, opts: GradeOptions) -> dict[str, Any]:
    cur = child.current or {}
    rc = child.returncode
    elapsed = float(cur.get("elapsed", 0.0))
    tail = child.tail
    if child.killed_for == "timeout" or (rc >= 0 and elapsed >= 0.95 * opts.timeout):
        outcome, why = "timeout", f"timed out after {opts.timeout:g} s; the grader stopped the test process"
    elif child.killed_for == "memory":
        outcome, why = "memory", f"used more than the {opts.memory_mb} MB memory cap; the grader killed it"
    elif rc < 0:
        sig = signal.Signals(-rc).name
        outcome = "memory" if sig == "SIGKILL" else "crashed"
        why = f"the test process was killed by {sig}" + (" (likely the OOM killer)" if sig == "SIGKILL" else "")
    else:
        outcome, why = "crashed", f"the test process exited with code {rc} in the middle of the test"
    context = "" if outcome == "timeout" else crash_context(tail)  # a timeout's stack dump says little
    message = why + (" | " + context if context else "")
    return {
        "event": "report", "nodeid": cur.get("nodeid"), "when": "call", "unit": cur.get("unit", "other"),
        "points": float(cur.get("points", 1.0)), "outcome": outcome, "duration": elapsed,
        "message": message[-2000:],
    }


def summarize(tests: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-unit subtotals and the total: earned, possible (skipped excluded), passed, failed, skipped."""
    units: dict[str, dict[str, Any]] = {}

    def bump(acc: dict[str, Any], t: dict[str, Any]) -> None:
        acc["tests"] += 1
        if t["outcome"] == "skipped":  # only the specs can skip (an adapter's skip is a failure): out of the total
            acc["skipped"] += 1
            return
        acc["possible"] += t["points"]
        acc["earned"] += t["earned"]
        acc["passed" if t["outcome"] == "passed" else "failed"] += 1

    def empty() -> dict[str, Any]:
        return {"earned": 0.0, "possible": 0.0, "tests": 0, "passed": 0, "failed": 0, "skipped": 0}

    total = empty()
    for t in tests:
        bump(units.setdefault(t["unit"], empty()), t)
        bump(total, t)
    for acc in [*units.values(), total]:
        acc["percent"] = round(100.0 * acc["earned"] / acc["possible"], 1) if acc["possible"] else None
    return dict(sorted(units.items())), total


def grade(opts: GradeOptions) -> dict[str, Any]:
    """Run the specs against ``opts.adapter``; write and return the grade document."""
    echo = opts.echo or (lambda _msg: None)
    if looks_like_path(opts.adapter):
        opts.adapter = str(Path(opts.adapter).resolve())
    paths = spec_paths(opts.specs, opts.units)
    if looks_like_path(opts.adapter) and not Path(opts.adapter).is_file():
        raise GradeError(f"adapter file not found: {opts.adapter} (pass a .py file or an importable module name)")
    info = probe(opts.sandbox)
    if opts.sandbox == "bwrap" and not info.sandboxed:
        raise GradeError(f"no sandbox: {info.reason}")
    if not info.sandboxed:
        warn = (f"WARNING: grading WITHOUT a sandbox ({info.reason}). The adapter runs with only process-level "
                "limits: it can read files, use the network and leave processes. The grade is marked "
                "'not sandboxed'.")
        echo(warn)
        print(warn, file=sys.stderr, flush=True)
    collected: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    collect_errors: dict[str, dict[str, Any]] = {}
    restarts = 0
    fatal: str | None = None
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lmfs-grade-") as tmp:
        work = Path(tmp)
        (work / "scratch").mkdir()
        view = _worker_view(opts, work / "scratch")
        preflight(opts, view, info)
        worker_conf = work / "worker.json"
        worker_conf.write_text(json.dumps({
            "adapter": opts.adapter, "scratch": str(view.scratch), "sandbox": info.as_dict(),
            "readonly": [str(p) for p in view.readonly], "sys_path": view.sys_path, "memory_mb": opts.memory_mb,
            "tmp_mb": opts.tmp_mb, "threads": opts.threads,
        }))
        (work / "done.txt").write_text("")
        attempt = 0
        while True:
            child = _run_child(opts, paths, work, attempt, worker_conf)
            attempt += 1
            if not collected:
                collected.update(child.collected)  # the first spec process fixes the tests and their points
            child.records = {k: v for k, v in child.records.items() if k in collected}
            if child.current is not None and child.current.get("nodeid") not in collected:
                child.current = None
            for ce in child.collect_errors:
                collect_errors.setdefault(ce["nodeid"], ce)
            new = {k: v for k, v in child.records.items() if k not in records}
            records.update(new)
            died = child.current is not None and child.current.get("nodeid") not in records
            if died:
                rec = _death_record(child, opts)
                records[rec["nodeid"]] = rec
                echo(f"  {rec['outcome'].upper()}: {rec['nodeid']} - {rec['message'][:160]}")
                new[rec["nodeid"]] = rec
            remaining = [n for n in collected if n not in records]
            if not collected:
                if child.returncode == 5 or (not child.collect_errors and child.returncode in (0, 5)):
                    break  # no tests in these specs at all (an empty selection), not a 0/0 grade of a submission
                fatal = f"the spec process collected no tests (exit {child.returncode}): {crash_context(child.tail)}"
                break
            if not remaining:
                break
            if not died and not remaining:
                if child.returncode not in (0, 1, 5):
                    fatal = f"pytest exited with code {child.returncode}: {crash_context(child.tail)}"
                break
            if not new:
                fatal = (
                    f"the test process ended (exit {child.returncode}) with {len(remaining)} test(s) not run: "
                    f"{crash_context(child.tail)}"
                )
                break
            restarts += 1
            echo(f"  restarting the test process on {len(remaining)} remaining test(s)")
            with open(work / "done.txt", "w", encoding="utf-8") as fh:
                fh.write("\n".join(records) + "\n")
    tests = []
    for nodeid, rec in records.items():
        meta = collected.get(nodeid, {})
        points = float(meta.get("points", rec.get("points", 1.0)))
        outcome = str(rec.get("outcome"))
        if outcome not in ("passed", "skipped", *FAILED_OUTCOMES):
            outcome = "failed"
        tests.append(
            {
                "nodeid": nodeid,
                "unit": meta.get("unit", rec.get("unit", "other")),
                "points": points,
                "earned": points if outcome == "passed" else 0.0,
                "outcome": outcome,
                "duration": round(float(rec.get("duration") or 0.0), 4),
                "message": str(rec.get("message", ""))[-2000:],
                "static_skip": bool(meta.get("static_skip")) if outcome == "skipped" else False,
            }
        )
    for nodeid, meta in collected.items():
        if nodeid not in records:
            tests.append(
                {"nodeid": nodeid, "unit": meta.get("unit", "other"), "points": float(meta.get("points", 1.0)),
                 "earned": 0.0, "outcome": "not_run", "duration": 0.0, "message": fatal or "not run"}
            )
    units, total = summarize(tests)
    from lmfs.harness.machine import git_commit

    commit, dirty = git_commit(opts.cwd)
    doc = {
        "adapter": opts.adapter,
        "name": opts.name or grade_name(opts.adapter),
        "sandbox": info.as_dict(),
        "units_run": sorted(opts.units) if opts.units else None,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "lmfs_commit": (commit + ("-dirty" if dirty else "")) if commit else None,
        "specs": [str(p) for p in paths],
        "timeout_s": opts.timeout,
        "memory_mb": opts.memory_mb,
        "restarts": restarts,
        "wall_s": round(time.monotonic() - t0, 1),
        "error": fatal,
        "collect_errors": [
            {"nodeid": ce["nodeid"], "message": ce.get("message", "")} for ce in collect_errors.values()
        ],
        "units": units,
        "total": total,
        "tests": tests,
    }
    return doc


def grade_name(adapter: str) -> str:
    """The grade's file name: a module name as it is; a file by its last path parts plus a hash of its resolved
    path, so two students' ``.../hw/tests/adapters.py`` never share a grade."""
    name = adapter_name(adapter)
    if looks_like_path(adapter):
        digest = hashlib.sha256(str(Path(adapter).resolve()).encode()).hexdigest()[:10]
        name = f"{name}-{digest}"
    return name


def grade_path(reports_dir: Path, name: str) -> Path:
    return Path(reports_dir) / "grade" / f"{name}.json"


def merge_grades(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` on top of ``old`` (same adapter): the tests of the units ``new`` ran replace old ones; the other
    units' tests stay. The sandbox flag is the weakest of the two."""
    ran = set(new.get("units_run") or [t["unit"] for t in new["tests"]])
    kept = [t for t in old.get("tests", []) if t["unit"] not in ran]
    tests = kept + list(new["tests"])
    units, total = summarize(tests)
    merged = dict(new, tests=tests, units=units, total=total, units_run=sorted(ran | {t["unit"] for t in kept}))
    runs = list(old.get("runs") or [{k: old.get(k) for k in ("created", "units_run", "lmfs_commit", "specs")}])
    merged["runs"] = [*runs, {k: new.get(k) for k in ("created", "units_run", "lmfs_commit", "specs")}]
    old_sb, new_sb = old.get("sandbox") or {}, new.get("sandbox") or {}
    if not (old_sb.get("sandboxed") and new_sb.get("sandboxed")):
        merged["sandbox"] = dict(new_sb, sandboxed=False,
                                 reason=new_sb.get("reason") or old_sb.get("reason") or "an earlier run was not sandboxed")
    return merged


def write_grade(doc: dict[str, Any], reports_dir: Path) -> Path:
    """Write the grade; a run on some units (``units_run``) merges into an earlier grade of the same adapter."""
    path = grade_path(reports_dir, doc["name"])
    if doc.get("units_run") is not None and path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("adapter") == doc.get("adapter") and isinstance(old.get("tests"), list):
            doc = merge_grades(old, doc)
    write_json_atomic(path, doc)
    return path


def format_table(doc: dict[str, Any]) -> str:
    """A per-unit text table of a grade document."""
    rows = [("unit", "points", "percent", "passed", "failed", "skipped")]
    for unit, acc in [*doc["units"].items(), ("TOTAL", doc["total"])]:
        pct = "-" if acc["percent"] is None else f"{acc['percent']:.1f}%"
        rows.append(
            (unit, f"{acc['earned']:g}/{acc['possible']:g}", pct, str(acc["passed"]), str(acc["failed"]),
             str(acc["skipped"]))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
