"""The harness's own report sections: grades, latest benchmarks with peer ratios, history with change points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, escape, note, svg_figure, table_html

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
        parts.append(note(f"adapter {d.get('adapter')} · lmfs {d.get('lmfs_commit')} · {d.get('created')} · "
                          f"timeout {d.get('timeout_s')} s · memory cap {d.get('memory_mb')} MB · "
                          f"restarts {d.get('restarts')}"))
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


def _store_frame(reports_dir: Path) -> tuple[Any, list[str]]:
    from lmfs.harness.history import runs_frame
    from lmfs.harness.store import load_store

    runs, problems = load_store(reports_dir, warn=False)
    return runs_frame(runs), problems


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


def peer_table(latest: Any) -> Any:
    """Per group with an lmfs entry and at least one peer: lmfs median, peer median, time and speed ratios.
    Variants of lmfs itself (impl ``lmfs-…``) are not peers; they show in the full table."""
    import pandas as pd

    rows = []
    for group, g in latest.groupby("group", sort=True):
        ours = g[g["impl"] == "lmfs"]
        peers = g[~g["impl"].str.startswith("lmfs")]
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


def benchmarks(reports_dir: Path) -> Section | None:
    import pandas as pd

    df, problems = _store_frame(reports_dir)
    if df.empty and not problems:
        return None
    from lmfs.harness.history import latest_runs

    parts = [_warn_box(problems)]
    parts.append(note("Latest stored run per machine (reports/bench/<machine_id>/<commit>.json). Peers share a "
                      "benchmark group with lmfs; time ratio < 1 means lmfs is faster. Never compare across "
                      "machines."))
    latest = latest_runs(df)
    for machine, g in latest.groupby("machine_id", sort=True):
        commit = g["commit"].iloc[0]
        parts.append(f"<h3>{escape(machine)} · commit {escape(commit)}</h3>")
        peers = peer_table(g)
        if not peers.empty:
            parts.append("<h4>lmfs vs peers</h4>")
            parts.append(table_html(peers, float_format="{:.3g}"))
        allb = pd.DataFrame([
            {"benchmark": r.benchmark, "group": r.group, "impl": r.impl, "median": _fmt_time(r.median),
             "IQR": _fmt_time(r.iqr) if r.iqr else "", "rounds": r.rounds, "throughput": _throughput(r)}
            for r in g.itertuples()
        ])
        parts.append(f"<details><summary>all {len(allb)} benchmarks</summary>{table_html(allb)}</details>")
    return Section(id="benchmarks", title="Benchmarks (latest per machine)", html="\n".join(parts), order=20)


# ------------------------------------------------------------------------------------------------ history


def _history_figures(mdf: Any, changes: Any) -> list[str]:
    import matplotlib.pyplot as plt

    commits = mdf.drop_duplicates("commit").sort_values("order")["commit"].tolist()
    xpos = {c: i for i, c in enumerate(commits)}
    names = sorted(b for b, g in mdf.groupby("benchmark") if g["commit"].nunique() >= 2)
    figs = []
    for start in range(0, len(names), MAX_PLOTS_PER_FIGURE):
        chunk = names[start:start + MAX_PLOTS_PER_FIGURE]
        cols = min(3, len(chunk))
        rows = (len(chunk) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
        for ax, name in zip(axes.flat, chunk, strict=False):
            g = mdf[mdf["benchmark"] == name].sort_values("order")
            x = [xpos[c] for c in g["commit"]]
            ax.plot(x, g["median"] * 1e3, "o-", ms=3, color="#3465a4")
            lo = (g["median"] - g["iqr"] / 2).clip(lower=0) * 1e3
            hi = (g["median"] + g["iqr"] / 2) * 1e3
            ax.fill_between(x, lo, hi, color="#3465a4", alpha=0.15, lw=0)
            for ch in changes[changes["benchmark"] == name].itertuples():
                color = "#c00" if ch.kind.startswith("regression") else "#1b7f3b"
                ax.axvline(xpos[ch.commit] - 0.5, color=color, ls=":" if ch.kind.endswith("?") else "--", lw=1.2)
                ax.text(xpos[ch.commit] - 0.45, 0.04, f"×{ch.ratio:.2f}", color=color, fontsize=7,
                        ha="left", va="bottom", transform=ax.get_xaxis_transform())
            module, _, test = name.rpartition("::")
            ax.set_title(f"{Path(module).stem}\n{test[-55:]}" if module else name[-55:], fontsize=7)
            ax.set_ylabel("median (ms)", fontsize=7)
            ax.set_xticks(range(len(commits)))
            ax.set_xticklabels([c[:7] + ("*" if c.endswith("-dirty") else "") for c in commits],
                               rotation=60, fontsize=6)
            ax.tick_params(axis="y", labelsize=6)
            ax.set_ylim(bottom=0)
        for ax in list(axes.flat)[len(chunk):]:
            ax.axis("off")
        fig.tight_layout()
        figs.append(svg_figure(fig))
    return figs


def history(reports_dir: Path) -> Section | None:
    import pandas as pd

    from lmfs.harness.regress import compare_frames, history_changes

    df, _problems = _store_frame(reports_dir)
    if df.empty:
        return None
    parts = [note("Median per benchmark over the stored commits of each machine (git order; * = dirty tree), "
                  "band = IQR. Dashed lines mark change points: binary segmentation on log medians, confirmed by "
                  "Mann–Whitney U on the raw rounds around them (red = slower, green = faster; dotted and '?' = "
                  "too few rounds to confirm). The table compares the last two commits: a regression is "
                  "flagged only when the median ratio exceeds 1.10 and Mann–Whitney U on the raw rounds gives "
                  "p < 0.01.")]
    any_history = False
    for machine, mdf in df.groupby("machine_id", sort=True):
        commits = mdf.drop_duplicates("commit").sort_values("order")["commit"].tolist()
        if len(commits) < 2:
            parts.append(f"<h3>{escape(machine)}</h3>" + note(f"one commit stored ({commits[0]}); history needs two."))
            continue
        any_history = True
        changes = history_changes(mdf)
        parts.append(f"<h3>{escape(machine)} · {len(commits)} commits</h3>")
        parts.extend(_history_figures(mdf, changes))
        if not changes.empty:
            parts.append("<h4>Change points</h4>")
            parts.append(table_html(changes.drop(columns=["machine_id", "index"]), float_format="{:.3g}"))
        a, b = commits[-2], commits[-1]
        cmp_ = compare_frames(mdf[mdf["commit"] == a], mdf[mdf["commit"] == b])
        if not cmp_.empty:
            parts.append(f"<h4>{escape(b)} vs {escape(a)}</h4>")
            cmp_ = cmp_.assign(median_a=cmp_["median_a"].map(_fmt_time), median_b=cmp_["median_b"].map(_fmt_time))
            parts.append(table_html(pd.DataFrame(cmp_), float_format="{:.3g}"))
    if not any_history and len(parts) == 1:
        return None
    return Section(id="history", title="Benchmark history", html="\n".join(parts), order=30)
