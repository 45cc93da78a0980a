"""The benchmark store: ``reports/bench/<machine_id>/<commit>[-dirty].json``, one pytest-benchmark JSON per
(machine, commit), committed to git as the performance history.

* Writes are atomic (temp file + ``os.replace``) and serialized per file by an advisory lock, so two
  concurrent runs never corrupt the store and never lose each other's rounds.
* Benching the same commit twice **merges**: benchmarks present in both runs get their raw rounds
  concatenated and their stats recomputed (so the median covers every round measured at that commit);
  benchmarks only in one run are kept as they are; ``lmfs.runs`` in the file lists every merged run.
* Reading skips malformed files with a warning instead of failing.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmfs.atomic import write_json_atomic
from lmfs.harness.atomic import locked


class StoreError(ValueError):
    """A bench file or a store request that cannot be honoured (message says what to do)."""


def store_dir(reports_dir: Path) -> Path:
    return Path(reports_dir) / "bench"


def commit_stem(commit: str, dirty: bool) -> str:
    return f"{commit[:12]}-dirty" if dirty else commit[:12]


def _commit_from_doc(doc: dict[str, Any]) -> str | None:
    info = doc.get("commit_info") or {}
    cid = info.get("id")
    if not cid or info.get("error") or cid == "unversioned":  # pytest-benchmark's id outside git
        return None
    return commit_stem(str(cid), bool(info.get("dirty")))


def validate(doc: Any, source: str) -> dict[str, Any]:
    """Check that ``doc`` looks like pytest-benchmark JSON; raise :class:`StoreError` naming ``source``."""
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise StoreError(f"{source}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    for i, bench in enumerate(doc["benchmarks"]):
        stats = bench.get("stats") if isinstance(bench, dict) else None
        if not isinstance(stats, dict) or not isinstance(stats.get("median"), int | float):
            raise StoreError(f"{source}: benchmark #{i} has no stats.median")
        if not bench.get("fullname"):
            raise StoreError(f"{source}: benchmark #{i} has no fullname")
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
    mid = machine_id or (doc.get("machine_info") or {}).get("machine_id")
    if not mid:
        raise StoreError(
            "benchmark JSON has no machine_info.machine_id (was it run without benchmarks/conftest.py?); "
            "pass --machine ID, e.g. cuda-h100 or cpu-amd-epyc-2c"
        )
    stem = commit or _commit_from_doc(doc)
    if not stem:
        raise StoreError("benchmark JSON has no commit_info.id (run outside git?); pass --commit HASH[-dirty]")
    if "/" in mid or "/" in stem or mid.startswith(".") or stem.startswith("."):
        raise StoreError(f"bad machine id {mid!r} or commit {stem!r}")
    doc = copy.deepcopy(doc)
    doc.setdefault("datetime", _dt.datetime.now(_dt.UTC).isoformat())
    meta = doc.setdefault("lmfs", {})
    meta.update({"machine_id": mid, "commit": stem})
    meta.setdefault("runs", [_run_summary(doc)])
    path = store_dir(reports_dir) / mid / f"{stem}.json"
    with locked(path):
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
    return Run(mdir.name, path.stem, path, validate(doc, str(path)))


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
