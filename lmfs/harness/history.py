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


def bench_threads(bench: dict[str, Any], machine_info: dict[str, Any] | None) -> int | None:
    """CPU threads one benchmark ran on: its ``extra_info`` (``threads``; ``threads_per_rank`` × ranks or
    world size; ``cores``), else the run's ``machine_info.torch_threads``; None when nothing says."""
    extra = bench.get("extra_info") or {}

    def num(x: Any) -> int | None:
        return int(x) if isinstance(x, int | float) and not isinstance(x, bool) and x > 0 else None

    if num(extra.get("threads")):
        return num(extra["threads"])
    per_rank = num(extra.get("threads_per_rank"))
    if per_rank:
        return per_rank * (num(extra.get("ranks")) or num(extra.get("world_size")) or 1)
    if num(extra.get("cores")):
        return num(extra["cores"])
    return num((machine_info or {}).get("torch_threads"))


def runs_frame(runs: list[Run], log: list[str] | None = None) -> pd.DataFrame:
    """One row per (run, benchmark): machine_id, commit, order, datetime, benchmark (fullname), name, group,
    impl, median/mean/iqr/stddev/min (s), rounds, data (raw rounds or None), bytes/tokens/flops per round,
    threads (:func:`bench_threads`, NaN when unknown), and the run's load (``load_peak``: highest 1-min load
    average recorded, NaN when the run recorded none; ``loaded``: peak above cores × LOADED_PER_CPU)."""
    from lmfs.harness.machine import run_load

    log = git_log() if log is None else log
    order = commit_positions(runs, log)
    rows = []
    for r in runs:
        load = run_load(r.doc)
        minfo = r.doc.get("machine_info") if isinstance(r.doc.get("machine_info"), dict) else {}
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
                "threads": bench_threads(b, minfo),
                "load_peak": load["peak"] if load else None,
                "loaded": bool(load and load["loaded"]),
            }
            for key in THROUGHPUT_KEYS:
                val = extra.get(key)
                row[key] = float(val) if isinstance(val, int | float) else None
            rows.append(row)
    cols = ["machine_id", "commit", "order", "datetime", "benchmark", "name", "group", "impl", "median",
            "mean", "iqr", "stddev", "min", "rounds", "data", *THROUGHPUT_KEYS, "threads", "load_peak", "loaded"]
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


def short_label(group: str, impl: str, width: int = 44) -> str:
    """``group`` (plus `` [impl]`` for a variant of lmfs), cut to ``width`` characters from the left."""
    text = str(group) + ("" if impl == "lmfs" else f" [{impl}]")
    return text if len(text) <= width else "…" + text[-(width - 1):]


def run_legend(mdf: pd.DataFrame) -> pd.DataFrame:
    """One row per stored commit of one machine, in history order: commit, datetime, load_peak, loaded."""
    cols = ["commit", "datetime", "load_peak", "loaded"]
    return mdf.drop_duplicates("commit").sort_values("order")[cols].reset_index(drop=True)


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}ms" if ms < 1000 else f"{seconds:.3g}s"


def terminal_history(df: pd.DataFrame, machine: str, last: int = 5, absolute: bool = False,
                     width: int = 38) -> str:
    """``lmfs bench history`` for one machine, sized for a terminal: one row per lmfs benchmark of the
    ``last`` stored commits (peers are the yardstick, not rows), each cell lmfs's median time relative to its
    same-run peer (``0.87`` = 13 % faster than the peer) or, for a benchmark without a peer (``vs`` = ``-``)
    or with ``absolute``, its median time; ``·`` where that commit did not run it; a trailing ``t`` where that
    run used another CPU thread count than the newest one shown. A legend says when each commit ran and under
    what load."""
    from lmfs.harness.regress import is_peer, with_peers

    mdf = with_peers(df[df["machine_id"] == machine])
    legend = run_legend(mdf)
    shown = legend.tail(last)
    commits = shown["commit"].tolist()
    ours = mdf[~mdf["impl"].map(is_peer) & mdf["commit"].isin(commits)]
    heads = [c[:7] + ("*" if c.endswith("-dirty") else "") + ("!" if bool(lo) else "")
             for c, lo in zip(shown["commit"], shown["loaded"], strict=True)]
    colw = max(8, *(len(h) for h in heads)) + 1
    vsw = 13
    lines = [f"{'benchmark (group [variant])':<{width}} {'vs':<{vsw}}" + "".join(f"{h:>{colw}}" for h in heads)]
    lines.append("-" * len(lines[0]))
    for (group, impl), g in ours.groupby(["group", "impl"], sort=True):
        by = {r.commit: r for r in g.itertuples()}
        latest = by[max(by, key=commits.index)]
        peer = "" if absolute else str(latest.peer)
        cells = []
        for c in commits:
            r = by.get(c)
            if r is None:
                cells.append("·")
                continue
            if peer and r.peer == peer and r.rel == r.rel:
                cell = f"{r.rel:.3g}"
            elif peer:
                cells.append("·")  # that run had another set of peers: not the same ratio
                continue
            else:
                cell = _fmt_ms(r.median)
            cells.append(cell + ("t" if r.threads == r.threads and latest.threads == latest.threads
                                 and r.threads != latest.threads else ""))
        label = peer if len(peer) <= vsw else peer[:vsw - 1] + "…"
        lines.append(f"{short_label(group, impl, width):<{width}} {label or '-':<{vsw}}"
                     + "".join(f"{x:>{colw}}" for x in cells))
    lines.append("")
    lines.append("cells: lmfs time / peer time in the same run (< 1: lmfs faster); 'vs -': no peer, median time."
                 if not absolute else "cells: median time per round.")
    lines.append("t: that run used another CPU thread count than the newest shown (not comparable along the row).")
    lines.append("commits (oldest -> newest; * dirty tree, ! taken under load):")
    for r in shown.itertuples():
        load = "load not recorded" if r.load_peak != r.load_peak or r.load_peak is None else (
            f"peak 1-min load {r.load_peak:.2f}" + (" UNDER LOAD" if r.loaded else ""))
        lines.append(f"  {r.commit:<20} {str(r.datetime)[:16].replace('T', ' '):<17} {load}")
    if len(legend) > len(shown):
        lines.append(f"  ({len(legend) - len(shown)} older commit(s) not shown: --last N)")
    return "\n".join(lines)
