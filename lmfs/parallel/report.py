"""The report's parallel-training section: loss curves of one run trained in one process and on several ranks
(FSDP under torchrun), and of the multi-rank run SIGKILLed and resumed.

Reads ``reports/data/parallel/*_curves.json`` (committed), written by :func:`write_curves` from finished run
folders::

    python -c "from lmfs.parallel.report import write_curves; write_curves(
        {'1 process': 'runs/parallel/gutenberg_1proc', 'FSDP, 2 ranks': 'runs/parallel/gutenberg_fsdp2',
         'FSDP, 2 ranks, SIGKILLed + resumed': 'runs/parallel/gutenberg_fsdp2_killed'},
        'reports/data/parallel/gutenberg_small_curves.json', note='...')"

Returns None when there is no such file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmfs.reporting import Section, data_provenance, escape, note, svg_figure, table_html


def _curve(run_dir: Path) -> dict[str, list[list[float]]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {
        "train": [[r["step"], r["train_loss"]] for r in rows if r.get("kind") == "train"],
        "val": [[r["step"], r["val_loss"]] for r in rows if r.get("kind") == "val"],
    }


def write_curves(runs: dict[str, str | Path], out: str | Path, note: str = "", machine: str = "",
                 **meta: Any) -> Path:
    """Store the train/val loss curves of finished runs (label -> run folder), the machine they ran on and
    any other facts (``meta``: load average, commit...)."""
    from lmfs.atomic import write_json_atomic

    doc: dict[str, Any] = {"note": note, "machine": machine, "runs": {}, **meta}
    for label, folder in runs.items():
        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
        worlds = sorted({r.get("world_size", 1) for r in rows if r.get("kind") == "train"})
        doc["runs"][label] = {"folder": str(folder), "parallel": cfg.get("parallel", "none"), "world_sizes": worlds,
                              **_curve(folder)}
    write_json_atomic(out, doc, indent=1)
    return Path(out)


def _max_gap(a: list[list[float]], b: list[list[float]]) -> float | None:
    other = dict((int(s), v) for s, v in b)
    gaps = [abs(v - other[int(s)]) for s, v in a if int(s) in other]
    return max(gaps) if gaps else None


def _one(path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    doc = json.loads(path.read_text(encoding="utf-8"))
    runs = doc["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    styles = ["-", "--", ":"]
    for i, (label, run) in enumerate(runs.items()):
        for ax, kind in zip(axes, ("train", "val"), strict=True):
            pts = run.get(kind) or []
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[i % 3], marker="o" if kind == "val" else None,
                        markersize=3, label=label)
    for ax, kind in zip(axes, ("train", "val"), strict=True):
        ax.set_xlabel("step")
        ax.set_ylabel(f"{kind} loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    labels = list(runs)
    base = runs[labels[0]]
    rows = []
    for label in labels[1:]:
        rows.append({"run": label, "vs": labels[0],
                     "max |Δ train loss|": _max_gap(runs[label]["train"], base["train"]),
                     "max |Δ val loss|": _max_gap(runs[label]["val"], base["val"])})
    if len(labels) >= 3:
        rows.append({"run": labels[2], "vs": labels[1],
                     "max |Δ train loss|": _max_gap(runs[labels[2]]["train"], runs[labels[1]]["train"]),
                     "max |Δ val loss|": _max_gap(runs[labels[2]]["val"], runs[labels[1]]["val"])})
    html = svg_figure(fig)
    if rows:
        html += table_html(pd.DataFrame(rows), float_format="{:.3g}")
    if doc.get("note"):
        html += note(doc["note"])
    html += data_provenance(path, f"curves in {path.name}", ["lmfs/parallel", "lmfs/train/distributed.py"],
                            machine=doc.get("machine"))
    return f"<h3>{escape(path.stem)}</h3>" + html


def section(reports_dir: str | Path) -> Section | None:
    folder = Path(reports_dir) / "data" / "parallel"
    files = sorted(folder.glob("*_curves.json")) if folder.is_dir() else []
    if not files:
        return None
    body = note(
        "One training run in one process and under torchrun with FSDP (lmfs.parallel.fsdp): the same global "
        "batch, so the curves should coincide up to floating-point summation order; the resumed run was "
        "SIGKILLed in the middle of a checkpoint and restarted with the same command."
    )
    body += "".join(_one(p) for p in files)
    return Section(id="parallel", title="Parallel training", html=body, order=60)
