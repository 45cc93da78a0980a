"""Report section: FlashAttention GPU benchmarks from the bench store (``reports/bench/<machine>/<commit>.json``):
the leaderboard configuration and the TFLOP/s sweep, one table per card. Until a GPU run is stored the section
says so plainly (and how to make one) rather than disappearing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, escape, note, provenance, svg_figure, table_html


def _gpu_attention_rows(reports_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((Path(reports_dir) / "bench").glob("*/*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        for b in doc.get("benchmarks", []) if isinstance(doc, dict) else []:
            extra = b.get("extra_info") or {}
            group = str(b.get("group") or "")
            if not group.startswith("attention-") or "do_bench_ms" not in extra:
                continue
            rows.append({
                "machine": path.parent.name, "commit": path.stem, "group": group,
                "date": doc.get("datetime"),
                "impl": extra.get("attn_impl", extra.get("impl")), "device": extra.get("device", "?"),
                "mode": extra.get("mode", "fwd+bwd"), "shape": "x".join(map(str, extra.get("shape", []))),
                "ms": float(extra["do_bench_ms"]), "TFLOP/s": float(extra.get("tflops", float("nan"))),
            })
    return rows


def section(reports_dir: Path) -> Section | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = _gpu_attention_rows(reports_dir)
    if not rows:
        return Section(id="kernels", title="FlashAttention-2 kernels (GPU)", order=65, html=note(
            "No GPU run stored: there is no FlashAttention benchmark in reports/bench/ (the CPU runs time the "
            "PyTorch version only, in the Benchmarks section). To fill this section, run "
            "benchmarks/gpu/run_device.sh on an H100/H200, then lmfs bench store kernels_gpu.json and commit "
            "the file it writes (see benchmarks/gpu/NOTES.md)."))
    df = pd.DataFrame(rows)
    parts = [provenance(source=f"reports/bench/{m}/{c}.json", commit=c, date=d, machine=f"{m} ({dev})",
                        threads="n/a (GPU)")
             for (m, c, d, dev), _g in df.groupby(["machine", "commit", "date", "device"], dropna=False)]
    parts += [note("triton.testing.do_bench medians (CUDA events), bf16, causal. FLOPs: 4·B·H·N²·D × 0.5 (causal), "
                  "backward 2.5× forward. Compare only within one card.")]
    lb = df[df["group"].str.startswith("attention-leaderboard")]
    if not lb.empty:
        parts.append("<h3>Leaderboard: (16, 16384, 64) bf16 causal, forward + o.sum().backward()</h3>")
        parts.append(table_html(lb[["device", "commit", "impl", "ms", "TFLOP/s"]], float_format="{:.3f}"))
    sweep = df[df["group"].str.startswith("attention-gpu-")].copy()
    if not sweep.empty:
        sweep["seq"] = sweep["shape"].str.split("x").str[1].astype(int)
        sweep["d"] = sweep["shape"].str.split("x").str[2].astype(int)
        for (device, mode, d), g in sweep.groupby(["device", "mode", "d"]):
            fig, ax = plt.subplots(figsize=(6, 3.2))
            for impl, gi in g.groupby("impl"):
                gi = gi.sort_values("seq")
                ax.plot(gi["seq"], gi["TFLOP/s"], marker="o", label=impl)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("sequence length")
            ax.set_ylabel("TFLOP/s")
            ax.set_title(f"{device}: {mode}, head dim {d}")
            ax.legend(fontsize=7)
            parts.append(svg_figure(fig))
        table = sweep.pivot_table(index=["device", "mode", "d", "seq"], columns="impl", values="TFLOP/s", aggfunc="last")
        parts.append(f"<h3>{escape('Sweep (TFLOP/s)')}</h3>")
        parts.append(table_html(table.reset_index(), float_format="{:.1f}"))
    return Section(id="kernels", title="FlashAttention-2 kernels (GPU)", html="\n".join(parts), order=65)
