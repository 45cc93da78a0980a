"""Report section: the profile summaries (share of time in matmul vs attention/softmax vs other, top kernels,
peak memory per phase) and the ``lmfs bench model`` timings, from ``reports/data/profile/`` (committed reference,
refreshed by maintainers with ``--data-dir`` / ``--out``) and ``reports/local/profile/`` (what the commands write
by default, ignored by git). Every block says its source, commit, date, machine and threads; committed data older
than the code it measures is marked stale; timings on different devices or thread counts get separate tables."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from lmfs.reporting import (
    Section,
    code_changed_since,
    data_dirs,
    escape,
    note,
    provenance,
    staleness,
    table_html,
)

#: the code a profile or a model timing measures (a change here makes a stored one stale)
CODE = ["lmfs/nn", "lmfs/profile", "lmfs/kernels", "lmfs/optim"]


def _load_summaries(data_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(data_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("categories"), list) and isinstance(doc.get("top"), list):
            doc["_file"] = path.name
            out.append(doc)
    return out


def _load_bench(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "mean_s" in rec:
            rows.append(rec)
    return rows


def _threads(rec: dict[str, Any]) -> Any:
    """Recorded threads, else the count in a device string such as ``cpu (x86_64, 2 threads)``."""
    if rec.get("threads"):
        return rec["threads"]
    m = re.search(r"(\d+) threads?", str(rec.get("device", "")))
    return int(m.group(1)) if m else None


def _summary_html(doc: dict[str, Any], label: str, rel: str) -> str:
    import pandas as pd

    cats = pd.DataFrame(doc["categories"])
    cats["share %"] = 100 * cats.pop("share")
    top = pd.DataFrame(doc["top"][:10])
    if not top.empty:
        top["share %"] = 100 * top.pop("share")
    parts = [f"<h3>{escape(doc.get('tag', '?'))} ({escape(label)})</h3>",
             provenance(source=f"{rel}/{doc['_file']}", commit=doc.get("commit"), date=doc.get("time"),
                        machine=doc.get("machine_id") or doc.get("device"), threads=_threads(doc),
                        extra=f"device {doc.get('device', '?')}, torch {doc.get('torch', '?')}"),
             staleness(f"profile {doc.get('tag')}", CODE, commit=doc.get("commit"), date=doc.get("time"))
             if label == "committed" else "",
             note(f"{doc.get('time_basis', '')}; {doc.get('total_ms_per_step', float('nan')):.2f} ms per profiled "
                  "step"),
             table_html(cats, float_format="{:.2f}"), table_html(top, float_format="{:.3f}")]
    mem = doc.get("profiler_memory")
    if mem:
        ckpt = doc.get("activation_checkpointing") or 0
        phases = ", ".join(f"{k} {v:.1f}" for k, v in (mem.get("phase_peak_mib") or {}).items())
        parts.append(note(
            f"profiler peak memory over one step ({mem.get('device', '?')} allocator events, above its lowest live "
            f"bytes): {mem['peak_mib']:.1f} MiB" + (f" ({phases})" if phases else "")
            + (f"; activation checkpointing every {ckpt} block(s)" if ckpt else "")))
    peaks = doc.get("peak_memory_mib")
    if peaks:
        parts.append(note("peak CUDA memory per phase (MiB): "
                          + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())))
    return "\n".join(parts)


def _bench_html(rows: list[dict[str, Any]], label: str, rel: str) -> list[str]:
    import pandas as pd

    df = pd.DataFrame(rows)
    df["threads"] = [_threads(r) for r in rows]
    if "commit" not in df.columns:
        df["commit"] = None
    cache: dict[tuple[Any, Any], str] = {}

    def current(commit: Any, when: Any) -> str:
        key = (commit, when)
        if key not in cache:
            changes = code_changed_since(CODE, commit=commit if isinstance(commit, str) else None,
                                         date=when if isinstance(when, str) else None)
            cache[key] = "?" if changes is None else ("STALE" if changes else "current")
        return cache[key]

    df["code"] = [current(c, t) for c, t in zip(df["commit"], df.get("time", [None] * len(df)), strict=True)]
    keep = [c for c in ("size", "context", "batch", "mode", "dtype", "compile", "attention", "mean_s", "std_s",
                        "tokens_per_s", "time", "commit", "code") if c in df.columns]
    parts = []
    for (device, threads), g in df.groupby(["device", "threads"], dropna=False, sort=True):
        t = g[keep].copy()
        t["mean ms"] = 1e3 * t.pop("mean_s")
        t["std ms"] = 1e3 * t.pop("std_s")
        commits = sorted({str(c) for c in g.get("commit", pd.Series(dtype=object)).dropna()})
        machines = sorted({str(m) for m in g.get("machine_id", pd.Series(dtype=object)).dropna()})
        times = sorted(str(x) for x in g["time"].dropna()) if "time" in g.columns else []
        date = f"{times[0]} … {times[-1]}" if len(times) > 1 else (times[0] if times else None)
        parts.append(f"<h4>{escape(label)}: {escape(device)}</h4>")
        parts.append(provenance(source=f"{rel}/model_bench.jsonl", commit=", ".join(commits) or None, date=date,
                                machine=", ".join(machines) or str(device),
                                threads=None if threads != threads else threads))
        n_stale = int((g["code"] == "STALE").sum())
        if n_stale:
            parts.append(f'<div class="warn stale"><b>{n_stale} of {len(g)} rows are STALE: measured before later '
                         f'commits changed {escape(", ".join(CODE))} (column "code").</b></div>')
        parts.append(table_html(t.tail(60), float_format="{:.2f}"))
    return parts


def section(reports_dir: Path) -> Section | None:
    import pandas as pd

    parts = []
    found = False
    for label, data_dir in data_dirs(reports_dir, "profile"):
        rel = f"reports/{data_dir.parent.name}/profile"
        summaries = _load_summaries(data_dir)
        bench = _load_bench(data_dir / "model_bench.jsonl")
        if not summaries and not bench:
            continue
        found = True
        parts.append(f"<h2 class='sub'>{'Committed reference' if label == 'committed' else 'Local runs'} "
                     f"({escape(rel)}/)</h2>")
        if label == "local":
            parts.append(note("Written by lmfs profile / lmfs bench model on this machine (not committed)."))
        if summaries:
            overview = pd.DataFrame([
                {"run": d.get("tag"), "device": d.get("device"), "threads": _threads(d),
                 "commit": d.get("commit") or "not recorded", "ms/step": d.get("total_ms_per_step"),
                 **{f"{c['category']} %": 100 * c["share"] for c in d["categories"]}}
                for d in summaries
            ])
            parts.append(note("Share of profiled time by kind of work, per `lmfs profile` run (CUDA: kernel time; "
                              "CPU: operator self time). Traces: runs/profile/<run>/plugins/profile/ (TensorBoard, "
                              "Perfetto)."))
            for _key, g in overview.groupby(["device", "threads"], dropna=False, sort=True):
                parts.append(table_html(g, float_format="{:.1f}"))
            parts.extend(_summary_html(d, label, rel) for d in summaries)
        if bench:
            parts.append("<h3>lmfs bench model</h3>")
            parts.append(note("Warm-up steps untimed; device synchronized; mean and std over the timed steps. One "
                              "table per device and thread count."))
            parts.extend(_bench_html(bench, label, rel))
    if not found:
        return None
    return Section(id="profile", title="Profiling the Transformer LM", html="\n".join(parts), order=70)
