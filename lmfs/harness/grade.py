"""Grading an adapter against the specs, safely.

The specs run in a child ``pytest`` process, with lmfs's plugin loaded explicitly (``-p``: the specs may lie
outside this checkout, away from its conftests), that writes one JSON line per test phase (``--grade-log``, see
:mod:`lmfs.harness.pytest_plugin`). This process watches it:

* **timeouts** — pytest-timeout (thread method) stops a slow test inside the child; if the child cannot act
  (a C call holding the GIL), the watcher kills the whole process group after ``1.5 x timeout + 2`` s;
* **memory** — the child runs under ``RLIMIT_DATA = memory_mb`` (a runaway allocation raises MemoryError /
  a torch allocation error inside the test), and the watcher kills it if its RSS passes ``1.25 x memory_mb``;
* **crashes** — when the child dies (signal, ``os._exit``, kill), the test that had started without a
  report is recorded as failed with the reason, and a new child runs the tests not yet recorded.

A missing adapter function (``AdapterMissing``) or ``NotImplementedError`` is a zero for that test; the child
tells these apart by the type of the exception a test raised, not by the text of its report.
Skipped tests (e.g. GPU specs on a CPU box) count in neither earned nor possible points.
The result goes to ``reports/grade/<adapter-name>.json``.
"""

from __future__ import annotations

import datetime as _dt
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


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        total = proc.memory_info().rss
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


def preflight(opts: GradeOptions) -> None:
    """Import the adapter in a throwaway child (under the same limits); raise :class:`GradeError` with a
    clear message when it does not exist, fails to import, hangs or crashes."""
    code = (
        "import sys\n"
        "from lmfs.harness.adapter import AdapterLoadError, load_adapter\n"
        "try:\n    load_adapter(sys.argv[1])\n"
        "except AdapterLoadError as exc:\n    print(exc, file=sys.stderr); sys.exit(3)\n"
    )
    try:
        res = subprocess.run(
            [sys.executable, "-c", code, opts.adapter],
            cwd=opts.cwd, env=_child_env(), capture_output=True, text=True, timeout=max(opts.timeout, 120),
            preexec_fn=_limit_memory(opts.memory_mb),
        )
    except subprocess.TimeoutExpired:
        raise GradeError(f"adapter {opts.adapter} did not finish importing within {max(opts.timeout, 120):.0f} s") from None
    if res.returncode == 0:
        return
    if res.returncode < 0:
        sig = signal.Signals(-res.returncode).name
        raise GradeError(f"adapter {opts.adapter} crashed the interpreter while importing ({sig})")
    detail = res.stderr.strip().splitlines()
    raise GradeError(detail[-1] if detail else f"adapter {opts.adapter} failed to import (exit {res.returncode})")


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


def _consume(line: str, child: _Child) -> None:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:
        return  # a torn last line of a killed child
    event = rec.get("event")
    if event == "collected":
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


def _run_child(opts: GradeOptions, paths: list[Path], work: Path, attempt: int) -> _Child:
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
    env = _child_env()
    hard_timeout = 1.5 * opts.timeout + 2.0
    rss_cap = int(1.25 * opts.memory_mb * 2**20) if opts.memory_mb else None
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
        while True:
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
            elif rss_cap and (polls := polls + 1) % 4 == 0 and _tree_rss(proc.pid) > rss_cap:
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
        if t["outcome"] == "skipped":
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
    preflight(opts)
    collected: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    collect_errors: dict[str, dict[str, Any]] = {}
    restarts = 0
    fatal: str | None = None
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lmfs-grade-") as tmp:
        work = Path(tmp)
        (work / "done.txt").write_text("")
        attempt = 0
        while True:
            child = _run_child(opts, paths, work, attempt)
            attempt += 1
            collected.update(child.collected)
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
            if not remaining and collected:
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
        tests.append(
            {
                "nodeid": nodeid,
                "unit": meta.get("unit", rec.get("unit", "other")),
                "points": points,
                "earned": points if rec["outcome"] == "passed" else 0.0,
                "outcome": rec["outcome"],
                "duration": round(float(rec.get("duration") or 0.0), 4),
                "message": rec.get("message", ""),
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
        "name": adapter_name(opts.adapter),
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


def grade_path(reports_dir: Path, name: str) -> Path:
    return Path(reports_dir) / "grade" / f"{name}.json"


def write_grade(doc: dict[str, Any], reports_dir: Path) -> Path:
    path = grade_path(reports_dir, doc["name"])
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
