"""The bench store as pandas tables: one row per (run, benchmark), ordered along the git history.

Commit order comes from ``git log`` (oldest first); a stored commit git does not know (another branch, a
rewritten history, a run brought back from another machine) is placed by its run's datetime after the
known commits run before it. A ``-dirty`` run sorts right after its clean commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from lmfs.harness.store import Run

THROUGHPUT_KEYS = ("bytes", "tokens", "flops")


def git_log(root: Path | None = None) -> list[str]:
    """Full commit hashes reachable from HEAD, oldest first (empty outside git)."""
    try:
        out = subprocess.run(
            ["git", "log", "--format=%H", "--reverse"],
            cwd=str(root) if root else None, capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def commit_positions(runs: list[Run], log: list[str]) -> dict[str, float]:
    """``commit stem -> sort key`` (see the module docstring)."""
    known: dict[str, float] = {}
    for r in runs:
        for i, full in enumerate(log):
            if full.startswith(r.base_commit):
                known[r.commit] = i + (0.5 if r.dirty else 0.0)
                break
    ordered = sorted(runs, key=lambda r: r.datetime)
    keys: dict[str, float] = {}
    last = -1.0
    for r in ordered:
        if r.commit in known:
            keys[r.commit] = known[r.commit]
            last = max(last, known[r.commit])
        else:
            keys.setdefault(r.commit, last + 0.75)
            last = keys[r.commit]
    return keys


def _impl(bench: dict[str, Any]) -> str:
    return str((bench.get("extra_info") or {}).get("impl") or "lmfs")


def runs_frame(runs: list[Run], log: list[str] | None = None) -> pd.DataFrame:
    """One row per (run, benchmark): machine_id, commit, order, datetime, benchmark (fullname), name, group,
    impl, median/mean/iqr/stddev/min (s), rounds, data (raw rounds or None), and bytes/tokens/flops per round."""
    log = git_log() if log is None else log
    order = commit_positions(runs, log)
    rows = []
    for r in runs:
        for b in r.doc.get("benchmarks", []):
            s = b.get("stats", {})
            extra = b.get("extra_info") or {}
            row = {
                "machine_id": r.machine_id,
                "commit": r.commit,
                "order": order.get(r.commit, 0.0),
                "datetime": r.datetime,
                "benchmark": b["fullname"],
                "name": b.get("name", b["fullname"]),
                "group": b.get("group") or b.get("name", b["fullname"]),
                "impl": _impl(b),
                "median": float(s["median"]),
                "mean": float(s.get("mean", s["median"])),
                "iqr": float(s.get("iqr", 0.0) or 0.0),
                "stddev": float(s.get("stddev", 0.0) or 0.0),
                "min": float(s.get("min", s["median"])),
                "rounds": int(s.get("rounds", 0) or 0),
                "data": s.get("data"),
            }
            for key in THROUGHPUT_KEYS:
                val = extra.get(key)
                row[key] = float(val) if isinstance(val, int | float) else None
            rows.append(row)
    cols = ["machine_id", "commit", "order", "datetime", "benchmark", "name", "group", "impl", "median",
            "mean", "iqr", "stddev", "min", "rounds", "data", *THROUGHPUT_KEYS]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["machine_id", "order", "benchmark"], kind="stable").reset_index(drop=True)


class UnknownMachine(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def check_machine(df: pd.DataFrame, machine: str) -> None:
    known = sorted(df["machine_id"].unique())
    if machine not in known:
        raise UnknownMachine(
            f"unknown machine_id {machine!r}; the store has: {', '.join(known) or '(nothing yet: run lmfs bench run)'}"
        )


def history_table(df: pd.DataFrame, machine: str | None = None) -> pd.DataFrame:
    """Median seconds per benchmark (rows: machine_id, benchmark) over commits (columns, in history order)."""
    if machine is not None:
        check_machine(df, machine)
        df = df[df["machine_id"] == machine]
    if df.empty:
        return pd.DataFrame()
    commits = df.drop_duplicates("commit").sort_values("order")["commit"].tolist()
    table = df.pivot_table(index=["machine_id", "benchmark"], columns="commit", values="median", aggfunc="first")
    return table.reindex(columns=[c for c in commits if c in table.columns])


def latest_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the latest commit (highest order) per machine."""
    if df.empty:
        return df
    last = df.groupby("machine_id")["order"].transform("max")
    return df[df["order"] == last]
