"""Report section: the decoding engine's throughput from the bench store (``benchmarks/test_infer_engine.py`` and
``benchmarks/test_infer_server.py`` runs in ``reports/bench/<machine>/<commit>.json``): the batch-size scaling
curve (aggregate tokens/s per impl), the ratios to Hugging Face ``generate`` in the same run, prefill and time
to first token, and the server against the engine. Returns None until such a run is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, escape, note, svg_figure, table_html

PEER = "hf-transformers"


def _rows(reports_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((Path(reports_dir) / "bench").glob("*/*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        stamp = str(doc.get("datetime", "")) if isinstance(doc, dict) else ""
        for b in doc.get("benchmarks", []) if isinstance(doc, dict) else []:
            group = str(b.get("group") or "")
            if not group.startswith(("infer-", "serve-")):
                continue
            extra = b.get("extra_info") or {}
            median = float((b.get("stats") or {}).get("median", float("nan")))
            tokens = extra.get("tokens")
            rows.append(
                {
                    "machine": path.parent.name,
                    "commit": path.stem,
                    "datetime": stamp,
                    "group": group,
                    "impl": extra.get("impl", b.get("name")),
                    "batch": extra.get("batch"),
                    "seconds": median,
                    "tokens/s": float(tokens) / median if tokens and median > 0 else float("nan"),
                    "load": extra.get("load", ""),
                    "extra": extra,
                }
            )
    return rows


def section(reports_dir: Path) -> Section | None:
    rows = _rows(Path(reports_dir))
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame(rows)
    # the newest run per machine that has the decode groups
    parts = [
        note(
            "SmolLM2-135M (fp32 weights dequantized from the GGUF), greedy, CPU threads as stored. "
            "Aggregate tokens/s = batch × new tokens / median round time; ratios are against Hugging Face "
            "LlamaForCausalLM.generate on the same weights in the same run."
        )
    ]
    for machine, dm in df.groupby("machine"):
        decode = dm[dm["group"].str.startswith("infer-decode-")]
        if decode.empty:
            continue
        latest = decode.sort_values("datetime")["commit"].iloc[-1]
        run = dm[dm["commit"] == latest]
        decode = run[run["group"].str.startswith("infer-decode-")].copy()
        decode["batch"] = decode["batch"].astype(int)
        pivot = decode.pivot_table(
            index="batch", columns="impl", values="tokens/s", aggfunc="last"
        ).sort_index()
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for impl in pivot.columns:
            ax.plot(pivot.index, pivot[impl], marker="o", label=impl)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (concurrent sequences)")
        ax.set_ylabel("aggregate tokens/s")
        ax.set_title(f"{machine} @ {latest}: decode scaling")
        ax.legend(fontsize=7)
        parts.append(f"<h3>{escape(machine)} — run {escape(latest)}</h3>")
        parts.append(svg_figure(fig))
        plt.close(fig)
        table = pivot.copy()
        if PEER in table.columns:
            for impl in [c for c in pivot.columns if c.startswith("lmfs")]:
                table[f"{impl} / HF"] = pivot[impl] / pivot[PEER]
        parts.append(table_html(table.reset_index(), float_format="{:.2f}"))
        loads = sorted({str(x) for x in decode["load"] if x})
        if loads:
            parts.append(
                note(f"1-minute load average at the start of each decode benchmark: {', '.join(loads)}")
            )
        other = dm[~dm["group"].str.startswith("infer-decode-")].sort_values("datetime")
        other = other.groupby(["group", "impl"], as_index=False).last()  # the newest figure of each
        if not other.empty:
            keys = ("acceptance_rate", "tokens_per_pass", "latency_p50_s", "latency_p99_s", "lost_or_garbled")
            other["details"] = [
                ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in e.items() if k in keys
                )
                for e in other["extra"]
            ]
            small = other[["group", "impl", "commit", "seconds", "tokens/s", "details"]].sort_values(
                ["group", "impl"]
            )
            parts.append(
                "<h4>Prefill, time to first token, speculative decoding, server (newest of each)</h4>"
            )
            parts.append(table_html(small, float_format="{:.4g}"))
    if len(parts) == 1:
        return None
    return Section(id="infer", title="Inference engine: batched decoding", html="\n".join(parts), order=58)
