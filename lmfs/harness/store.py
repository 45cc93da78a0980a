"""The benchmark store: ``reports/bench/<machine_id>/<commit>[-dirty].json``, one pytest-benchmark JSON per
(machine, commit), committed to git as the performance history.

* Writes are atomic (temp file + ``os.replace``) and serialized by an advisory lock on ``bench/.lock`` in
  the store itself (not in the temp folder: two writers with different ``$TMPDIR`` s, or on two machines
  sharing the folder, still take the same lock), so concurrent runs never corrupt the store and never lose
  each other's rounds.
* Benching the same commit twice **merges**: benchmarks present in both runs get their raw rounds
  concatenated and their stats recomputed (so the median covers every round measured at that commit);
  benchmarks only in one run are kept as they are; ``lmfs.runs`` in the file lists every merged run.
* Records are validated by type when written and when read (:func:`validate`: the fields ``history``,
  ``compare`` and the report use, with the types they need); reading skips a bad file with a warning naming
  it and the field, so one broken file never crashes ``lmfs bench history`` or the report.
* Machine ids are short slugs (letters, digits, ``.``, ``_``, ``-``); commits are hex hashes with an optional
  ``-dirty``; anything else git can resolve (``HEAD~1``, a branch, a tag) is stored under its hash.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import fcntl
import json
import math
import re
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmfs.atomic import write_json_atomic

LOCK_NAME = ".lock"
MACHINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{4,40}(-dirty)?$")


class StoreError(ValueError):
    """A bench file or a store request that cannot be honoured (message says what to do)."""


def store_dir(reports_dir: Path) -> Path:
    return Path(reports_dir) / "bench"


def commit_stem(commit: str, dirty: bool) -> str:
    return f"{commit[:12]}-dirty" if dirty else commit[:12]


@contextlib.contextmanager
def store_lock(reports_dir: Path) -> Iterator[Path]:
    """Hold the store's exclusive advisory lock (``<reports>/bench/.lock``) for a read-merge-write."""
    root = store_dir(reports_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def check_machine_id(mid: Any) -> str:
    """``mid`` when it is a machine slug (e.g. ``cuda-h100``, ``cpu-amd-epyc-2c``); StoreError otherwise."""
    if not isinstance(mid, str) or not MACHINE_RE.match(mid):
        raise StoreError(
            f"bad machine id {mid!r}: use letters, digits, '.', '_' or '-' (no spaces, slashes or markup; "
            "at most 80 characters, not starting with '.' or '-'), e.g. cuda-h100 or cpu-amd-epyc-2c"
        )
    return mid


def resolve_commit(commit: Any, root: Path | None = None) -> str:
    """A commit stem ``<hash>[-dirty]`` (hash cut to 12): hex as given, else what ``git rev-parse`` makes of
    it in ``root`` (``HEAD~1``, a branch, a tag). StoreError for blanks, markup, or names git cannot resolve."""
    if not isinstance(commit, str) or not commit.strip() or commit != commit.strip():
        raise StoreError(f"bad commit {commit!r}: pass a commit hash (or HASH-dirty, or a name git resolves)")
    if COMMIT_RE.match(commit):
        return commit_stem(commit.removesuffix("-dirty"), commit.endswith("-dirty"))
    name, dirty = commit.removesuffix("-dirty"), commit.endswith("-dirty")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/~^@{}-]*$", name) or ".." in name:
        raise StoreError(f"bad commit {commit!r}: not a hash, and not a name git could resolve")
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"],
            cwd=str(root) if root else None, capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        out = None
    if out is None or out.returncode != 0 or not COMMIT_RE.match(out.stdout.strip()):
        raise StoreError(f"bad commit {commit!r}: not a hash, and git cannot resolve it here")
    return commit_stem(out.stdout.strip(), dirty)


def _commit_from_doc(doc: dict[str, Any]) -> str | None:
    info = doc.get("commit_info") or {}
    cid = info.get("id")
    if not cid or info.get("error") or cid == "unversioned":  # pytest-benchmark's id outside git
        return None
    return commit_stem(str(cid), bool(info.get("dirty")))


def _is_number(v: Any, finite: bool = False) -> bool:
    """A real number (no bool), not NaN; with ``finite`` not infinite either (``ops`` of a 0 s mean is inf)."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)
    return ok and (not finite or math.isfinite(v))


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_STAT_NUMBERS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "ops", "total")
_STAT_COUNTS = ("rounds", "iterations", "iqr_outliers", "stddev_outliers")
_DICTS = ("machine_info", "commit_info", "lmfs")


def _check_load(load: Any, where: str) -> None:
    """The optional ``load`` record: ``{"start": [3 load averages], "end": [3], "cpus": int}``."""
    if not isinstance(load, dict):
        raise StoreError(f"{where}: 'load' must be an object (got {type(load).__name__})")
    for key in ("start", "end"):
        v = load.get(key)
        if v is not None and not (
            isinstance(v, list) and len(v) == 3 and all(_is_number(x, True) and x >= 0 for x in v)
        ):
            raise StoreError(f"{where}: load.{key} must be a list of 3 load averages >= 0 (got {v!r})")
    cpus = load.get("cpus")
    if cpus is not None and not (_is_count(cpus) and cpus > 0):
        raise StoreError(f"{where}: load.cpus must be a positive integer (got {cpus!r})")


def validate(doc: Any, source: str) -> dict[str, Any]:
    """Check that ``doc`` is pytest-benchmark JSON with the types the store's readers rely on; raise
    :class:`StoreError` naming ``source`` and the field. Checked: ``benchmarks`` (a list of objects with a
    string ``fullname``, optional string ``name``/``group``, object ``extra_info``/``options``/``params``
    and a ``stats`` object whose numbers are finite numbers, counts non-negative integers, ``data`` a list of
    numbers), the objects ``machine_info``/``commit_info``/``lmfs``, a string ``datetime`` and the optional
    ``load`` (see :func:`_check_load`)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise StoreError(f"{source}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    for key in _DICTS:
        if key in doc and not isinstance(doc[key], dict):
            raise StoreError(f"{source}: '{key}' must be an object (got {type(doc[key]).__name__})")
    if "datetime" in doc and not isinstance(doc["datetime"], str | None):
        raise StoreError(f"{source}: 'datetime' must be a string (got {doc['datetime']!r})")
    runs = (doc.get("lmfs") or {}).get("runs")
    if runs is not None and not (isinstance(runs, list) and all(isinstance(r, dict) for r in runs)):
        raise StoreError(f"{source}: lmfs.runs must be a list of objects")
    if "load" in doc:
        _check_load(doc["load"], source)
    for i, bench in enumerate(doc["benchmarks"]):
        where = f"{source}: benchmark #{i}"
        if not isinstance(bench, dict):
            raise StoreError(f"{where} is not an object")
        stats = bench.get("stats")
        if not isinstance(stats, dict) or not _is_number(stats.get("median"), finite=True):
            raise StoreError(f"{where} has no stats.median (a finite number)")
        if not bench.get("fullname") or not isinstance(bench["fullname"], str):
            raise StoreError(f"{where} has no fullname (a non-empty string)")
        where = f"{source}: benchmark {bench['fullname']!r}"
        for key in ("name", "group"):
            if bench.get(key) is not None and not isinstance(bench[key], str):
                raise StoreError(f"{where}: '{key}' must be a string (got {bench[key]!r})")
        for key in ("extra_info", "options", "params"):
            if bench.get(key) is not None and not isinstance(bench[key], dict):
                raise StoreError(f"{where}: '{key}' must be an object (got {type(bench[key]).__name__})")
        for key in _STAT_NUMBERS:
            if stats.get(key) is not None and not _is_number(stats[key]):
                raise StoreError(f"{where}: stats.{key} must be a number (got {stats[key]!r})")
        for key in _STAT_COUNTS:
            if stats.get(key) is not None and not _is_count(stats[key]):
                raise StoreError(f"{where}: stats.{key} must be a non-negative integer (got {stats[key]!r})")
        data = stats.get("data")
        if data is not None and not (isinstance(data, list) and all(_is_number(x, True) for x in data)):
            raise StoreError(f"{where}: stats.data must be a list of finite numbers")
    return doc


def recompute_stats(data: list[float], iterations: int = 1) -> dict[str, Any]:
    """pytest-benchmark-style stats of raw per-round times (seconds)."""
    a = np.asarray(data, dtype=float)
    q1, median, q3 = (float(x) for x in np.percentile(a, [25, 50, 75]))
    iqr = q3 - q1
    mean = float(a.mean())
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {
        "min": float(a.min()),
        "max": float(a.max()),
        "mean": mean,
        "stddev": std,
        "rounds": int(a.size),
        "median": median,
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": int(((a < q1 - 1.5 * iqr) | (a > q3 + 1.5 * iqr)).sum()),
        "stddev_outliers": int(((a < mean - std) | (a > mean + std)).sum()),
        "outliers": "",
        "ld15iqr": float(a[a >= q1 - 1.5 * iqr].min()),
        "hd15iqr": float(a[a <= q3 + 1.5 * iqr].max()),
        "ops": 1.0 / mean if mean > 0 else 0.0,
        "total": float(a.sum()),
        "data": [float(x) for x in a],
        "iterations": iterations,
    }


def _run_summary(doc: dict[str, Any]) -> dict[str, Any]:
    return {"datetime": doc.get("datetime"), "benchmarks": len(doc.get("benchmarks", []))}


def merge_runs(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge two runs of one commit on one machine (see the module docstring); ``new``'s metadata wins."""
    merged = copy.deepcopy(new)
    old_by_name = {b["fullname"]: b for b in old.get("benchmarks", [])}
    new_names = {b["fullname"] for b in new.get("benchmarks", [])}
    benches = []
    for bench in merged.get("benchmarks", []):
        prev = old_by_name.get(bench["fullname"])
        old_data = (prev or {}).get("stats", {}).get("data")
        new_data = bench.get("stats", {}).get("data")
        if prev is not None and old_data and new_data:
            bench["stats"] = recompute_stats(list(old_data) + list(new_data), bench["stats"].get("iterations", 1))
        benches.append(bench)
    benches += [copy.deepcopy(b) for name, b in old_by_name.items() if name not in new_names]
    merged["benchmarks"] = benches
    runs = list((old.get("lmfs") or {}).get("runs") or [_run_summary(old)])
    runs += list((new.get("lmfs") or {}).get("runs") or [_run_summary(new)])
    merged.setdefault("lmfs", {})["runs"] = runs
    return merged


def save_run(
    doc: dict[str, Any], reports_dir: Path, machine_id: str | None = None, commit: str | None = None
) -> Path:
    """Store one pytest-benchmark JSON document; returns the file it went to.

    ``machine_id`` defaults to ``machine_info.machine_id`` (set by benchmarks/conftest.py), ``commit`` to the
    document's ``commit_info`` (``<12 hex>[-dirty]``)."""
    validate(doc, "benchmark JSON")
    mid = machine_id if machine_id is not None else (doc.get("machine_info") or {}).get("machine_id")
    if not mid and machine_id is None:
        raise StoreError(
            "benchmark JSON has no machine_info.machine_id (was it run without benchmarks/conftest.py?); "
            "pass --machine ID, e.g. cuda-h100 or cpu-amd-epyc-2c"
        )
    stem = commit if commit is not None else _commit_from_doc(doc)
    if not stem and commit is None:
        raise StoreError("benchmark JSON has no commit_info.id (run outside git?); pass --commit HASH[-dirty]")
    check_machine_id(mid)
    from lmfs.paths import project_root

    stem = resolve_commit(stem, project_root())
    doc = copy.deepcopy(doc)
    doc.setdefault("datetime", _dt.datetime.now(_dt.UTC).isoformat())
    meta = doc.setdefault("lmfs", {})
    meta.update({"machine_id": mid, "commit": stem})
    meta.setdefault("runs", [_run_summary(doc)])
    path = store_dir(reports_dir) / mid / f"{stem}.json"
    with store_lock(reports_dir):
        if path.exists():
            try:
                old = validate(json.loads(path.read_text(encoding="utf-8")), str(path))
                doc = merge_runs(old, doc)
            except (json.JSONDecodeError, StoreError, UnicodeDecodeError) as exc:
                bad = path.with_name(path.name + ".corrupt")
                warnings.warn(f"{path} was malformed ({exc}); kept as {bad.name} and replaced", stacklevel=2)
                path.replace(bad)
        write_json_atomic(path, doc)
    return path


@dataclass
class Run:
    """One stored file: a machine, a commit (``<hash>[-dirty]``), and its pytest-benchmark document."""

    machine_id: str
    commit: str
    path: Path
    doc: dict[str, Any]

    @property
    def base_commit(self) -> str:
        return self.commit.removesuffix("-dirty")

    @property
    def dirty(self) -> bool:
        return self.commit.endswith("-dirty")

    @property
    def datetime(self) -> str:
        return str(self.doc.get("datetime") or "")


def _read_run(mdir: Path, path: Path) -> Run:
    """Parse one stored file; raise :class:`StoreError` saying what is wrong with it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise StoreError(f"{path}: {exc}") from None
    validate(doc, str(path))
    if not MACHINE_RE.match(mdir.name) or not COMMIT_RE.match(path.stem):
        raise StoreError(f"{path}: not a <machine>/<commit>[-dirty].json name")
    return Run(mdir.name, path.stem, path, doc)


def load_store(reports_dir: Path, *, warn: bool = True) -> tuple[list[Run], list[str]]:
    """Every valid run in the store, and a warning line for each file skipped."""
    runs: list[Run] = []
    problems: list[str] = []
    root = store_dir(reports_dir)
    if not root.is_dir():
        return runs, problems
    for mdir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(p for p in mdir.glob("*.json") if not p.name.startswith(".")):
            try:
                runs.append(_read_run(mdir, path))
            except StoreError as exc:
                msg = f"skipping malformed bench file {exc}"
                problems.append(msg)
                if warn:
                    warnings.warn(msg, stacklevel=2)
    return runs, problems


def machine_ids(runs: list[Run]) -> list[str]:
    return sorted({r.machine_id for r in runs})
