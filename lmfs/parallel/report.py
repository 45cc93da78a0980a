"""The report's parallel-training section: loss curves of one run trained in one process and on several ranks
(FSDP under torchrun), and of the multi-rank run SIGKILLed and resumed.

Reads ``reports/data/parallel/*_curves.json`` (committed), written by :func:`write_curves` from finished run
folders::

    python -c "from lmfs.parallel.report import write_curves; write_curves(
        {'1 process': 'runs/parallel/gutenberg_1proc', 'FSDP, 2 ranks': 'runs/parallel/gutenberg_fsdp2',
         'FSDP, 2 ranks, SIGKILLed + resumed': 'runs/parallel/gutenberg_fsdp2_killed'},
        'reports/data/parallel/gutenberg_small_curves.json', note='...')"

It also shows the activation checkpointing benchmark (groups ``actckpt-*`` of the bench store,
``benchmarks/test_parallel_actckpt.py``): the newest stored run per machine and group, step time (the recompute
cost) beside the PyTorch profiler's peak step memory (the memory saved), each against no checkpointing.

Returns None when there is neither.
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


ACTCKPT_ORDER = {0: 0, 2: 1, 1: 2}  # none, every 2nd, every block


def actckpt_rows(reports_dir: str | Path) -> list[dict[str, Any]]:
    """One row per benchmark of the newest stored run of each (machine, ``actckpt-*`` group)."""
    newest: dict[tuple[str, str], tuple[str, str, dict[str, Any], list[dict[str, Any]]]] = {}
    for path in sorted((Path(reports_dir) / "bench").glob("*/*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict):
            continue
        stamp = str(doc.get("datetime", ""))
        by_group: dict[str, list[dict[str, Any]]] = {}
        for b in doc.get("benchmarks", []):
            group = str(b.get("group") or "")
            if group.startswith("actckpt-") and "activation_checkpointing" in (b.get("extra_info") or {}):
                by_group.setdefault(group, []).append(b)
        for group, benches in by_group.items():
            key = (path.parent.name, group)
            if key not in newest or stamp > newest[key][0]:
                newest[key] = (stamp, path.stem, doc, benches)
    rows = []
    for (machine, group), (stamp, commit, doc, benches) in sorted(newest.items()):
        for b in benches:
            extra = b["extra_info"]
            rows.append({
                "machine": machine, "group": group, "commit": commit, "datetime": stamp,
                "load": (doc.get("load") or {}).get("start"), "every": int(extra["activation_checkpointing"]),
                "median_s": float((b.get("stats") or {}).get("median", float("nan"))), "extra": extra,
            })
    return rows


def _setting(every: int) -> str:
    return {0: "none", 1: "every block"}.get(every, f"every {every}th block" if every > 3 else
                                             f"every {every}{'nd' if every == 2 else 'rd'} block")


def actckpt_html(reports_dir: str | Path) -> str:
    """Tables of the activation checkpointing benchmark (empty when none is stored)."""
    import pandas as pd

    from lmfs.reporting import provenance

    rows = actckpt_rows(reports_dir)
    if not rows:
        return ""
    parts = ["<h3>Activation checkpointing: memory saved and recompute cost</h3>", note(
        "One training step (forward, backward, lmfs AdamW) with TransformerConfig.activation_checkpointing "
        "none / every 2nd / every block. Profiler peak: torch.profiler (profile_memory=True) allocator events "
        "summed over a steady-state step (CPU: in a fresh process; CUDA: the caching allocator's events, "
        "with torch.cuda.max_memory_allocated beside it), highest minus lowest live bytes (activations, "
        "gradients and temporaries above the weights and optimizer state). Saved for backward: distinct "
        "storages autograd keeps after forward. Step time: median of the timed rounds.")]
    df = pd.DataFrame(rows)
    for (machine, group), g in df.groupby(["machine", "group"], sort=True):
        g = g.assign(order=g["every"].map(lambda e: ACTCKPT_ORDER.get(e, e + 10))).sort_values("order")
        base = g[g["every"] == 0]
        t0 = float(base["median_s"].iloc[0]) if not base.empty else float("nan")
        m0 = float(base["extra"].iloc[0].get("profiler_peak_mib", float("nan"))) if not base.empty else float("nan")
        table = []
        for r in g.itertuples():
            peak = r.extra.get("profiler_peak_mib")
            row = {"checkpointing": _setting(r.every), "step (ms)": 1000 * r.median_s,
                   "time vs none": r.median_s / t0,
                   "profiler peak (MiB)": peak if peak is not None else float("nan"),
                   "memory vs none": (peak / m0) if peak is not None else float("nan"),
                   "saved for backward (MiB)": r.extra.get("saved_for_backward_mib", float("nan"))}
            if "cuda_max_allocated_mib" in r.extra:
                row["cuda max allocated (MiB)"] = r.extra["cuda_max_allocated_mib"]
            if "peak_rss_delta_mib" in r.extra:
                row["peak RSS Δ (MiB)"] = r.extra["peak_rss_delta_mib"]
            table.append(row)
        first = g.iloc[0]
        threads = first["extra"].get("threads")
        load = first["load"]
        extra = f"group {group}" + (f", {first['extra']['device']}" if first["extra"].get("device") else "")
        if load:
            extra += f", 1-min load {load[0]:.2f} at start"
        if first["extra"].get("memory_threads"):
            extra += f", memory measured on {first['extra']['memory_threads']} threads"
        parts.append(provenance(source=f"reports/bench/{machine}/{first['commit']}.json", commit=first["commit"],
                                date=first["datetime"], machine=machine,
                                threads=threads if threads else "not recorded", extra=extra))
        parts.append(table_html(pd.DataFrame(table), float_format="{:.4g}"))
    return "".join(parts)


def section(reports_dir: str | Path) -> Section | None:
    folder = Path(reports_dir) / "data" / "parallel"
    files = sorted(folder.glob("*_curves.json")) if folder.is_dir() else []
    ckpt = actckpt_html(reports_dir)
    if not files and not ckpt:
        return None
    body = ""
    if files:
        body += note(
            "One training run in one process and under torchrun with FSDP (lmfs.parallel.fsdp): the same global "
            "batch, so the curves should coincide up to floating-point summation order; the resumed run was "
            "SIGKILLed in the middle of a checkpoint and restarted with the same command."
        )
        body += "".join(_one(p) for p in files)
    body += ckpt
    return Section(id="parallel", title="Parallel training", html=body, order=60)
