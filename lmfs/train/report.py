"""The train unit's report section: learning curves and samples of the runs exported to reports/data/train/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, data_provenance, escape, note, svg_figure, table_html


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _curve(records: list[dict[str, Any]], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train" and r.get("train_loss") is not None]
    val = [r for r in records if r.get("kind") == "val" and r.get("val_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if train:
        ax.plot(
            [r["tokens"] / 1e6 for r in train],
            [r["train_loss"] for r in train],
            lw=1,
            alpha=0.8,
            label="train (batch)",
        )
    if val:
        ax.plot(
            [r["tokens"] / 1e6 for r in val], [r["val_loss"] for r in val], "o-", ms=4, label="validation"
        )
    ax.set_xlabel("tokens seen (millions)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if train:  # a secondary axis with optimizer steps
        steps_per_mtok = train[-1]["step"] / (train[-1]["tokens"] / 1e6)
        sec = ax.secondary_xaxis(
            "top", functions=(lambda t: t * steps_per_mtok, lambda s: s / steps_per_mtok)
        )
        sec.set_xlabel("step")
    return svg_figure(fig)


def _summary_table(summary: dict[str, Any]) -> str:
    import pandas as pd

    from lmfs.train.config import MODEL_TABLE, nested_config

    cfg = nested_config(summary.get("config", {}))  # summaries exported before the model was nested are flat
    model = cfg[MODEL_TABLE]
    rows = [
        (
            "model",
            f"d_model {model.get('d_model')}, {model.get('num_layers')} layers, {model.get('num_heads')} heads, "
            f"d_ff {model.get('d_ff')}, context {model.get('context_length')}, vocab {model.get('vocab_size')}",
        ),
        (
            "parameters",
            f"{summary.get('n_params', 0):,} ({summary.get('n_params_non_embedding') or 0:,} non-embedding)",
        ),
        ("steps / tokens seen", f"{summary.get('steps')} / {summary.get('tokens_seen') or 0:,}"),
        ("wall time", f"{(summary.get('wall_seconds') or 0) / 60:.1f} min"),
        ("final train loss (last batch)", f"{summary.get('final_train_loss') or float('nan'):.3f}"),
    ]
    if "val_loss" in summary:
        rows.append(
            (
                "validation loss (whole file)",
                f"{summary['val_loss']:.3f} nats/token, perplexity "
                f"{summary['val_ppl']:.1f} over {summary['val_tokens']:,} tokens of {Path(summary['val_file']).name}",
            )
        )
    for key in ("device", "autocast_bf16", "threads"):
        if key in cfg:
            rows.append((key, str(cfg[key])))
    if summary.get("machine"):
        rows.append(("machine", str(summary["machine"])))
    return table_html(pd.DataFrame(rows, columns=["", "value"]))


def section(reports_dir: Path) -> Section | None:
    """One block per run folder under ``reports_dir/data/train/`` that has a ``metrics.jsonl``; None if none."""
    root = Path(reports_dir) / "data" / "train"
    if not root.is_dir():
        return None
    blocks = []
    for run in sorted(p for p in root.iterdir() if (p / "metrics.jsonl").is_file()):
        try:
            records = _records(run / "metrics.jsonl")
            summary = (
                json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
            )
        except (OSError, json.JSONDecodeError):
            continue
        if not records:
            continue
        cfg = summary.get("config", {}) if isinstance(summary.get("config"), dict) else {}
        parts = [f"<h3>{escape(run.name)}</h3>",
                 data_provenance(run / "summary.json", f"the exported run {run.name}", ["lmfs/train", "lmfs/nn",
                                 "lmfs/optim"], commit=summary.get("commit"), date=summary.get("date"),
                                 machine=summary.get("machine"), threads=cfg.get("threads")),
                 _curve(records, run.name)]
        if summary:
            parts.append(_summary_table(summary))
        if (run / "samples.txt").is_file():
            parts.append(note("Samples from the final checkpoint (prompt, then the model's continuation):"))
            parts.append(f"<pre>{escape((run / 'samples.txt').read_text(encoding='utf-8'))}</pre>")
        blocks.append("\n".join(parts))
    if not blocks:
        return None
    intro = note(
        "Training runs of lmfs's from-scratch Transformer LM (lmfs train). Validation points are the mean "
        "loss over fixed validation batches during training; the table's validation loss covers the whole "
        "validation file (lmfs evaluate)."
    )
    return Section(id="train", title="Training runs", html=intro + "\n".join(blocks), order=40)
