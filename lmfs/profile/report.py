"""Report section: the profile summaries (share of time in matmul vs attention/softmax vs other, top kernels,
peak memory per phase) and the stored ``lmfs bench model`` timings, from ``reports/data/profile/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, escape, note, table_html


def _load_summaries(data_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(data_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("categories"), list) and isinstance(doc.get("top"), list):
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


def _summary_html(doc: dict[str, Any]) -> str:
    import pandas as pd

    cats = pd.DataFrame(doc["categories"])
    cats["share %"] = 100 * cats.pop("share")
    top = pd.DataFrame(doc["top"][:10])
    if not top.empty:
        top["share %"] = 100 * top.pop("share")
    head = (f"<h3>{escape(doc.get('tag', '?'))}</h3>"
            + note(f"{doc.get('device', '?')}, torch {doc.get('torch', '?')}; {doc.get('time_basis', '')}; "
                   f"{doc.get('total_ms_per_step', float('nan')):.2f} ms per profiled step; recorded {doc.get('time', '?')}"))
    parts = [head, table_html(cats, float_format="{:.2f}"), table_html(top, float_format="{:.3f}")]
    peaks = doc.get("peak_memory_mib")
    if peaks:
        parts.append(note("peak CUDA memory per phase (MiB): "
                          + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())))
    return "\n".join(parts)


def section(reports_dir: Path) -> Section | None:
    import pandas as pd

    data_dir = Path(reports_dir) / "data" / "profile"
    if not data_dir.is_dir():
        return None
    summaries = _load_summaries(data_dir)
    bench = _load_bench(data_dir / "model_bench.jsonl")
    if not summaries and not bench:
        return None
    parts = []
    if summaries:
        overview = pd.DataFrame([
            {"run": d.get("tag"), "device": d.get("device"), "ms/step": d.get("total_ms_per_step"),
             **{f"{c['category']} %": 100 * c["share"] for c in d["categories"]}}
            for d in summaries
        ])
        parts.append(note("Share of profiled time by kind of work, per `lmfs profile` run (CUDA: kernel time; "
                          "CPU: operator self time). Traces: runs/profile/<run>/plugins/profile/ (TensorBoard, Perfetto)."))
        parts.append(table_html(overview, float_format="{:.1f}"))
        parts.extend(_summary_html(d) for d in summaries)
    if bench:
        df = pd.DataFrame(bench)
        keep = [c for c in ("size", "context", "batch", "mode", "dtype", "compile", "attention", "device",
                            "mean_s", "std_s", "tokens_per_s", "time") if c in df.columns]
        df = df[keep].copy()
        df["mean ms"] = 1e3 * df.pop("mean_s")
        df["std ms"] = 1e3 * df.pop("std_s")
        parts.append("<h3>lmfs bench model</h3>")
        parts.append(note("Warm-up steps untimed; device synchronized; mean and std over the timed steps."))
        parts.append(table_html(df.tail(60), float_format="{:.2f}"))
    return Section(id="profile", title="Profiling the Transformer LM", html="\n".join(parts), order=70)
