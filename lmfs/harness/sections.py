"""The harness's own report sections: grades, latest benchmarks with peer ratios, history with change points."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, escape, note, provenance, svg_figure, table_html

MAX_PLOTS_PER_FIGURE = 12


def _warn_box(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{escape(x)}</li>" for x in lines)
    return f'<div class="warn"><ul>{items}</ul></div>'


# ------------------------------------------------------------------------------------------------- grades


def load_grades(reports_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    docs, problems = [], []
    for path in sorted((Path(reports_dir) / "grade").glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or "units" not in doc or "tests" not in doc:
                raise ValueError("not a grade file (no units/tests)")
            docs.append(doc)
        except (ValueError, OSError) as exc:
            problems.append(f"skipping malformed grade file {path.name}: {exc}")
    return docs, problems


def grades(reports_dir: Path) -> Section | None:
    import pandas as pd

    docs, problems = load_grades(reports_dir)
    if not docs and not problems:
        return None
    parts = [
        _warn_box(problems),
        note("Points per unit for each graded adapter (lmfs grade). Skipped tests (e.g. GPU specs on a CPU box) "
             "count in neither column."),
    ]
    summary = pd.DataFrame(
        [{"adapter": d.get("name"), "points": d["total"]["earned"], "possible": d["total"]["possible"],
          "percent": d["total"].get("percent"), "failed": d["total"]["failed"], "graded": d.get("created")}
         for d in docs]
    )
    if not summary.empty:
        parts.append(table_html(summary))
    for d in docs:
        parts.append(f"<h3>{escape(d.get('name'))}</h3>")
        parts.append(provenance(
            source=f"reports/grade/{d.get('name')}.json", commit=d.get("lmfs_commit"), date=d.get("created"),
            machine=d.get("machine_id") or d.get("machine"), threads="n/a (pass/fail, not timings)",
            extra=f"adapter {d.get('adapter')} · timeout {d.get('timeout_s')} s · memory cap "
                  f"{d.get('memory_mb')} MB · restarts {d.get('restarts')}"))
        if d.get("error"):
            parts.append(f'<div class="error"><pre>{escape(d["error"])}</pre></div>')
        rows = [{"unit": u, **{k: acc.get(k) for k in ("earned", "possible", "percent", "passed", "failed", "skipped")}}
                for u, acc in d["units"].items()]
        rows.append({"unit": "TOTAL", **{k: d["total"].get(k) for k in
                                         ("earned", "possible", "percent", "passed", "failed", "skipped")}})
        parts.append(table_html(pd.DataFrame(rows)))
        failing = [t for t in d["tests"] if t["outcome"] not in ("passed", "skipped")]
        if failing:
            parts.append(f"<details><summary>{len(failing)} failing test(s)</summary>")
            parts.append(table_html(pd.DataFrame(
                [{"test": t["nodeid"], "points": t["points"], "outcome": t["outcome"],
                  "message": (t.get("message") or "")[:300]} for t in failing])))
            parts.append("</details>")
        for ce in d.get("collect_errors", []):
            parts.append(f'<div class="error"><b>collection error</b> {escape(ce["nodeid"])}'
                         f'<pre>{escape(ce["message"][-800:])}</pre></div>')
    return Section(id="grades", title="Grades", html="\n".join(parts), order=10)


# ------------------------------------------------------------------------------------------------ benchmarks


def _store(reports_dir: Path) -> tuple[Any, dict[tuple[str, str], dict[str, Any]], list[str]]:
    """The store as a frame, each run's document by (machine_id, commit), and the files skipped."""
    from lmfs.harness.history import runs_frame
    from lmfs.harness.store import load_store

    runs, problems = load_store(reports_dir, warn=False)
    return runs_frame(runs), {(r.machine_id, r.commit): r.doc for r in runs}, problems


def _store_frame(reports_dir: Path) -> tuple[Any, list[str]]:
    df, _docs, problems = _store(reports_dir)
    return df, problems


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _throughput(row: Any) -> str:
    out = []
    for key, unit in (("bytes", "MB/s"), ("tokens", "tok/s"), ("flops", "GFLOP/s")):
        val = getattr(row, key, None)
        if val is not None and val == val and row.median > 0:  # not None / NaN
            rate = val / row.median
            rate = rate / 1e6 if key == "bytes" else rate / 1e9 if key == "flops" else rate
            out.append(f"{rate:,.0f} {unit}" if rate >= 1000 else f"{rate:.3g} {unit}")
    return ", ".join(out)


def _threads_label(t: Any) -> str:
    if t is None or t != t:
        return "thread count not recorded"
    return f"{int(t)} thread" + ("" if int(t) == 1 else "s")


def _by_threads(frame: Any) -> list[tuple[str, Any]]:
    """``frame`` split by its ``threads`` column (NaN last): one table per thread count."""
    keys = frame["threads"].drop_duplicates().tolist()
    keys.sort(key=lambda t: (t != t, t if t == t else 0))
    return [(_threads_label(t), frame[frame["threads"] == t] if t == t else frame[frame["threads"].isna()])
            for t in keys]


def peer_table(latest: Any) -> Any:
    """Per group with an lmfs entry and at least one peer: lmfs median, peer median, time and speed ratios.
    Variants of lmfs itself (impl ``lmfs-…``) are not peers; they show in the full table."""
    import pandas as pd

    from lmfs.harness.regress import is_peer

    rows = []
    for group, g in latest.groupby("group", sort=True):
        ours = g[g["impl"] == "lmfs"]
        peers = g[g["impl"].map(is_peer)]
        for o in ours.itertuples():
            for p in peers.itertuples():
                rows.append({
                    "group": group,
                    "lmfs": o.name,
                    "lmfs median": _fmt_time(o.median),
                    "peer": p.impl,
                    "peer median": _fmt_time(p.median),
                    "time ratio (lmfs/peer)": o.median / p.median,
                    "speed (peer/lmfs time)": p.median / o.median,
                    "lmfs throughput": _throughput(o),
                    "peer throughput": _throughput(p),
                })
    return pd.DataFrame(rows)


def run_provenance(machine: str, commit: str, doc: dict[str, Any] | None, frame: Any = None) -> str:
    """The provenance line of one stored run (file, commit, date, machine, thread counts, load) and, when the
    run was taken under load, a box saying what that means for its numbers."""
    from lmfs.harness.machine import format_load, run_load
    from lmfs.reporting import provenance

    doc = doc or {}
    info = doc.get("machine_info") if isinstance(doc.get("machine_info"), dict) else {}
    device = info.get("device") or info.get("cpu_model")
    threads = None
    if frame is not None and "threads" in frame.columns:
        threads = [int(t) for t in frame["threads"].dropna().unique()]
    elif info.get("torch_threads"):
        threads = info.get("torch_threads")
    load = run_load(doc)
    line = provenance(source=f"reports/bench/{machine}/{commit}.json", commit=commit, date=doc.get("datetime"),
                      machine=f"{machine} ({device})" if device else machine, threads=threads,
                      extra=format_load(load))
    if load and load["loaded"]:
        line += _warn_box([
            f"Taken under load: peak 1-min load average {load['peak']:.2f} on {load['cpus']} cpus. Absolute "
            "times are inflated by the machine; lmfs / peer ratios from the same run stay comparable, and "
            "regressions are judged on them."])
    return line


def benchmarks(reports_dir: Path) -> Section | None:
    import pandas as pd

    df, docs, problems = _store(reports_dir)
    if df.empty and not problems:
        return None
    from lmfs.harness.history import latest_runs

    parts = [_warn_box(problems)]
    parts.append(note("Latest stored run per machine (reports/bench/<machine_id>/<commit>.json). Peers share a "
                      "benchmark group with lmfs; time ratio < 1 means lmfs is faster. Never compare across "
                      "machines; one table per CPU thread count."))
    latest = latest_runs(df)
    for machine, g in latest.groupby("machine_id", sort=True):
        commit = g["commit"].iloc[0]
        parts.append(f"<h3>{escape(machine)} · commit {escape(commit)}</h3>")
        parts.append(run_provenance(machine, commit, docs.get((machine, commit)), g))
        for label, gt in _by_threads(g):
            peers = peer_table(gt)
            if not peers.empty:
                parts.append(f"<h4>lmfs vs peers · {escape(label)}</h4>")
                parts.append(table_html(peers, float_format="{:.3g}"))
        for label, gt in _by_threads(g):
            allb = pd.DataFrame([
                {"benchmark": r.benchmark, "group": r.group, "impl": r.impl, "median": _fmt_time(r.median),
                 "IQR": _fmt_time(r.iqr) if r.iqr else "", "rounds": r.rounds, "throughput": _throughput(r)}
                for r in gt.itertuples()
            ])
            parts.append(f"<details><summary>all {len(allb)} benchmarks · {escape(label)}</summary>"
                         f"{table_html(allb)}</details>")
    return Section(id="benchmarks", title="Benchmarks (latest per machine)", html="\n".join(parts), order=20)


# ------------------------------------------------------------------------------------------------ history


def _tick(commit: str, loaded: bool) -> str:
    return commit[:7] + ("*" if commit.endswith("-dirty") else "") + ("!" if loaded else "")


def _history_figures(mdf: Any, changes: Any) -> list[str]:
    """One small plot per lmfs benchmark: its time relative to its same-run peer over the commits (absolute
    median where it has no peer); peers are the yardstick and get no plot."""
    import matplotlib.pyplot as plt

    from lmfs.harness.regress import is_peer, with_peers

    legend = mdf.drop_duplicates("commit").sort_values("order")
    commits = legend["commit"].tolist()
    ticks = [_tick(c, bool(lo)) for c, lo in zip(legend["commit"], legend["loaded"], strict=True)]
    xpos = {c: i for i, c in enumerate(commits)}
    rel = with_peers(mdf)
    rel = rel[~rel["impl"].map(is_peer)]
    names = sorted(b for b, g in rel.groupby("benchmark") if g["commit"].nunique() >= 2)
    figs = []
    for start in range(0, len(names), MAX_PLOTS_PER_FIGURE):
        chunk = names[start:start + MAX_PLOTS_PER_FIGURE]
        cols = min(3, len(chunk))
        rows = (len(chunk) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
        for ax, name in zip(axes.flat, chunk, strict=False):
            g = rel[rel["benchmark"] == name].sort_values("order")
            relative = bool(g["peer"].astype(bool).all())
            x = [xpos[c] for c in g["commit"]]
            if relative:
                ax.plot(x, g["rel"], "o-", ms=3, color="#3465a4")
                ax.axhline(1.0, color="#888", lw=0.8, ls=":")
                ax.set_ylabel(f"lmfs / {g['peer'].iloc[-1][:18]}", fontsize=7)
            else:
                ax.plot(x, g["median"] * 1e3, "o-", ms=3, color="#8f5902")
                lo = (g["median"] - g["iqr"] / 2).clip(lower=0) * 1e3
                hi = (g["median"] + g["iqr"] / 2) * 1e3
                ax.fill_between(x, lo, hi, color="#8f5902", alpha=0.15, lw=0)
                ax.set_ylabel("median (ms), no peer", fontsize=7)
            for ch in changes[changes["benchmark"] == name].itertuples():
                color = "#c00" if ch.kind.startswith("regression") else "#1b7f3b"
                ax.axvline(xpos[ch.commit] - 0.5, color=color, ls=":" if ch.kind.endswith("?") else "--", lw=1.2)
                ax.text(xpos[ch.commit] - 0.45, 0.04, f"×{ch.ratio:.2f}", color=color, fontsize=7,
                        ha="left", va="bottom", transform=ax.get_xaxis_transform())
            module, _, test = name.rpartition("::")
            ax.set_title(f"{Path(module).stem}\n{test[-55:]}" if module else name[-55:], fontsize=7)
            ax.set_xticks(range(len(commits)))
            ax.set_xticklabels(ticks, rotation=60, fontsize=6)
            ax.tick_params(axis="y", labelsize=6)
            ax.set_ylim(bottom=0)
        for ax in list(axes.flat)[len(chunk):]:
            ax.axis("off")
        fig.tight_layout()
        figs.append(svg_figure(fig))
    return figs


def runs_table(mdf: Any, docs: dict[tuple[str, str], dict[str, Any]], machine: str) -> Any:
    """One row per stored run of a machine (history order): commit, date, torch threads, load at start and
    end, under load, benchmarks."""
    import pandas as pd

    from lmfs.harness.machine import run_load

    rows = []
    for commit in mdf.drop_duplicates("commit").sort_values("order")["commit"]:
        doc = docs.get((machine, commit)) or {}
        info = doc.get("machine_info") if isinstance(doc.get("machine_info"), dict) else {}
        load = run_load(doc)

        def fmt(x: list[float] | None) -> str:
            return "" if not x else " / ".join(f"{v:.2f}" for v in x[:3])

        rows.append({
            "commit": commit,
            "date": str(doc.get("datetime") or "")[:16].replace("T", " "),
            "torch threads": info.get("torch_threads", ""),
            "load at start (1/5/15 min)": fmt(load["start"]) if load else "not recorded",
            "load at end": fmt(load["end"]) if load else "",
            "cpus": load["cpus"] if load else info.get("cpu_count", ""),
            "under load": ("YES" if load["loaded"] else "no") if load else "?",
            "benchmarks": int((mdf["commit"] == commit).sum()),
        })
    return pd.DataFrame(rows)


def history(reports_dir: Path) -> Section | None:
    import pandas as pd

    from lmfs.harness.machine import LOADED_PER_CPU
    from lmfs.harness.regress import compare_frames, history_changes

    df, docs, _problems = _store(reports_dir)
    if df.empty:
        return None
    parts = [note(
        "lmfs is judged against its peer in the same run, not against the machine: each plot is lmfs's median "
        "time divided by its benchmark group's peer (geometric mean when there are several) at each commit "
        "(git order; * = dirty tree, ! = taken under load), so a busier box moves both and the ratio stays. "
        "Benchmarks without a peer plot their absolute median (brown) and are marked 'absolute'. Dashed "
        "lines mark change points: binary segmentation on the log series, confirmed by Mann–Whitney U on the "
        "per-round ratios around them (red = slower, green = faster; dotted and '?' = too few rounds to "
        "confirm). The last table compares the last two commits: REGRESSION only when lmfs's ratio to its "
        "peer got worse by more than 10 % and Mann–Whitney U on the per-round ratios gives p < 0.01 and the "
        "change stands out of the spread of all benchmarks' ratios (3 robust sigmas; load that changes during "
        "a run scatters them: 'within spread'); 'inconclusive' when the rounds are too few for that test ever "
        "to reach p < 0.01.")]
    parts.append(note(f"A run is 'under load' when its 1-minute load average, at start or end, exceeds "
                      f"{LOADED_PER_CPU:g} × its usable cores. Runs stored before the load was recorded say "
                      f"'not recorded'."))
    any_history = False
    for machine, mdf in df.groupby("machine_id", sort=True):
        commits = mdf.drop_duplicates("commit").sort_values("order")["commit"].tolist()
        parts.append(f"<h3>{escape(machine)} · {len(commits)} commit(s)</h3>")
        dates = sorted(str(x) for x in mdf["datetime"].dropna().unique() if x)
        n_loaded = int(mdf.drop_duplicates("commit")["loaded"].sum())
        n_known = int(mdf.drop_duplicates("commit")["load_peak"].notna().sum())
        parts.append(provenance(
            source=f"reports/bench/{machine}/ ({len(commits)} stored runs)",
            commit=f"{commits[0]} … {commits[-1]}" if len(commits) > 1 else commits[0],
            date=f"{dates[0][:16]} … {dates[-1][:16]}" if len(dates) > 1 else (dates[0] if dates else None),
            machine=machine, threads=[int(t) for t in mdf["threads"].dropna().unique()],
            extra=f"{n_loaded} of {n_known} runs with a load record taken under load; "
                  f"{len(commits) - n_known} without one"))
        parts.append("<details><summary>stored runs: date, threads, load</summary>"
                     + table_html(runs_table(mdf, docs, machine)) + "</details>")
        if len(commits) < 2:
            parts.append(note(f"one commit stored ({commits[0]}); history needs two."))
            continue
        any_history = True
        changes = history_changes(mdf)
        parts.extend(_history_figures(mdf, changes))
        if not changes.empty:
            parts.append("<h4>Change points</h4>")
            parts.append(table_html(changes.drop(columns=["machine_id", "index"]), float_format="{:.3g}"))
        a, b = commits[-2], commits[-1]
        cmp_ = compare_frames(mdf[mdf["commit"] == a], mdf[mdf["commit"] == b])
        cmp_ = cmp_[cmp_["verdict"] != "peer"]
        if not cmp_.empty:
            counts = cmp_["verdict"].value_counts().to_dict()
            parts.append(f"<h4>{escape(b)} vs {escape(a)}</h4>")
            parts.append(run_provenance(machine, a, docs.get((machine, a)), mdf[mdf["commit"] == a]))
            parts.append(run_provenance(machine, b, docs.get((machine, b)), mdf[mdf["commit"] == b]))
            spread = cmp_.attrs.get("spread")
            parts.append(note("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                              + (f"; spread of the ratios vs peer: ×{math.exp(spread):.3f} (robust sigma of "
                                 f"their logs)" if spread is not None else "")))
            cmp_ = cmp_.assign(median_a=cmp_["median_a"].map(_fmt_time), median_b=cmp_["median_b"].map(_fmt_time))
            cmp_ = cmp_.rename(columns={"median_a": f"{a[:7]} median", "median_b": f"{b[:7]} median",
                                        "ratio": "time ratio", "peer_ratio": "peer's ratio",
                                        "rel_ratio": "ratio vs peer"})
            parts.append(table_html(pd.DataFrame(cmp_.drop(columns=["group"])), float_format="{:.3g}"))
    if not any_history and len(parts) == 2:
        return None
    return Section(id="history", title="Benchmark history", html="\n".join(parts), order=30)
