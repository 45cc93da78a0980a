"""Sweeps of real lmfs runs: a grid of (FLOP budget × model size), each trained with ``lmfs.train.train``.

Plan: for every budget C and target size N (non-embedding parameters, see :mod:`lmfs.scaling.shapes`), the
shape comes from N, the exact training FLOPs per token from :mod:`lmfs.scaling.accounting` (lm_head and
attention included), and the tokens from the budget: ``steps = C / (flops_per_token · batch · context)``.
Runs with fewer than ``min_steps`` steps are left out of the plan (the budget is too small for that size).

Resumable run by run: each finished run is appended to the results table (CSV, rewritten atomically), and a
re-run skips the run ids already in it; an interrupted run resumes from its own checkpoint in
``runs_dir/<run_id>``. The table's ``compute`` column is the nominal budget (so the isoFLOP fits group by
it); ``compute_actual`` is what the run really spent (whole steps).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmfs.atomic import write_text_atomic
from lmfs.nn.config import TransformerConfig
from lmfs.scaling.accounting import param_count, training_flops_per_token
from lmfs.scaling.shapes import ShapeRule, shape_for_params

COLUMNS = [
    "run_id",
    "compute",
    "compute_actual",
    "n_params",
    "n_params_total",
    "tokens",
    "loss",
    "train_loss",
    "d_model",
    "num_layers",
    "num_heads",
    "d_ff",
    "steps",
    "batch_size",
    "context_length",
    "lr",
    "wall_s",
    "device",
]


@dataclass
class SweepSpec:
    """What to sweep and how each run trains. Defaults: the 2-core CPU sweep (≈ 15-20 min)."""

    budgets: tuple[float, ...] = (3e11, 1e12, 3e12)
    sizes: tuple[float, ...] = (1e4, 2.5e4, 4e4, 1e5, 2.5e5, 6e5, 1.5e6, 3e6)
    max_sizes: int = 8  #: per budget, the largest this-many sizes that get at least min_steps
    vocab_size: int = 10_000
    context_length: int = 64
    batch_size: int = 8
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.05
    min_steps: int = 50
    eval_batches: int = 30
    train_data: str = "runs/data/gutenberg-10k/train.npy"
    val_data: str = "runs/data/gutenberg-10k/valid.npy"
    device: str = "cpu"
    threads: int = 1  #: torch threads per run; 1 is fastest for tiny models on a shared 2-core box
    seed: int = 0
    runs_dir: str = "runs/scaling/cpu"
    table: str = "reports/data/scaling/sweep_cpu.csv"
    shape_rule: ShapeRule = field(default_factory=ShapeRule)


def run_id(budget: float, shape: TransformerConfig) -> str:
    return f"C{budget:.2e}-d{shape.d_model}-L{shape.num_layers}".replace("+", "")


def plan(spec: SweepSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """The runs of a sweep (dicts with run_id, budget, shape, steps, tokens, compute_actual) and notes on the
    (budget, size) pairs left out."""
    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    tokens_per_step = spec.batch_size * spec.context_length
    for budget in spec.budgets:
        feasible = []
        for n in sorted(spec.sizes):
            shape = shape_for_params(n, spec.vocab_size, spec.context_length, spec.shape_rule)
            fpt = training_flops_per_token(shape)
            steps = int(budget // (fpt * tokens_per_step))
            rid = run_id(budget, shape)
            if steps < spec.min_steps:
                notes.append(f"{rid}: {steps} steps < min_steps {spec.min_steps}; left out")
            elif not any(r["run_id"] == rid for r in feasible):
                feasible.append(
                    {
                        "run_id": rid,
                        "budget": float(budget),
                        "shape": shape,
                        "steps": steps,
                        "tokens": steps * tokens_per_step,
                        "flops_per_token": fpt,
                        "compute_actual": fpt * steps * tokens_per_step,
                    }
                )
        if len(feasible) > spec.max_sizes:
            notes.extend(
                f"{r['run_id']}: beyond the {spec.max_sizes} largest sizes of this budget; left out"
                for r in feasible[: len(feasible) - spec.max_sizes]
            )
            feasible = feasible[len(feasible) - spec.max_sizes :]
        runs.extend(feasible)
    return runs, notes


def read_results(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    return pd.read_csv(p)


def append_result(path: str | Path, row: dict[str, Any]) -> pd.DataFrame:
    """Add one row to the CSV table, rewriting it atomically (a crash leaves the old table intact)."""
    df = read_results(path)
    df = (
        pd.concat([df, pd.DataFrame([{c: row.get(c) for c in COLUMNS}])], ignore_index=True)
        if len(df)
        else pd.DataFrame([{c: row.get(c) for c in COLUMNS}])
    )
    write_text_atomic(path, df.to_csv(index=False))
    return df


TrainFn = Callable[[Any], Any]


def _train_config(spec: SweepSpec, run: dict[str, Any]) -> Any:
    from lmfs.train import TrainConfig

    steps = run["steps"]
    return TrainConfig(
        model=run["shape"],
        train_data=spec.train_data,
        val_data=spec.val_data,
        lr=spec.lr,
        min_lr=spec.lr * spec.min_lr_ratio,
        warmup_iters=max(1, round(spec.warmup_frac * steps)),
        batch_size=spec.batch_size,
        max_steps=steps,
        eval_interval=0,
        eval_batches=spec.eval_batches,
        log_interval=max(1, steps // 10),
        ckpt_interval=max(50, steps // 4),
        keep_checkpoints=1,
        tensorboard=False,
        device=spec.device,
        threads=spec.threads,
        seed=spec.seed,
        out_dir=str(Path(spec.runs_dir) / run["run_id"]),
    )


def run_sweep(
    spec: SweepSpec,
    *,
    train_fn: TrainFn | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Train every planned run not yet in ``spec.table``; returns the whole table."""
    if train_fn is None:
        from lmfs.train import train

        def train_fn(cfg: Any) -> Any:
            return train(cfg, progress=False)

    runs, notes = plan(spec)
    for note in notes:
        log(note)
    done = set(read_results(spec.table)["run_id"].astype(str))
    todo = [r for r in runs if r["run_id"] not in done]
    log(
        f"sweep: {len(runs)} runs planned, {len(runs) - len(todo)} already in {spec.table}, {len(todo)} to train "
        f"({sum(r['compute_actual'] for r in todo):.3g} FLOPs)"
    )
    iterator: Any = todo
    if progress:
        from tqdm import tqdm

        iterator = tqdm(todo, desc="sweep", unit="run")
    df = read_results(spec.table)
    for run in iterator:
        cfg = _train_config(spec, run)
        t0 = time.perf_counter()
        result = train_fn(cfg)
        s: TransformerConfig = run["shape"]
        loss = result.final_val_loss if result.final_val_loss is not None else result.final_train_loss
        if loss is None or not math.isfinite(loss):
            log(f"{run['run_id']}: non-finite loss {loss}; not recorded")
            continue
        row = {
            "run_id": run["run_id"],
            "compute": run["budget"],
            "compute_actual": run["compute_actual"],
            "n_params": param_count(s).non_embedding,
            "n_params_total": param_count(s).total,
            "tokens": run["tokens"],
            "loss": loss,
            "train_loss": result.final_train_loss,
            "d_model": s.d_model,
            "num_layers": s.num_layers,
            "num_heads": s.num_heads,
            "d_ff": s.d_ff,
            "steps": run["steps"],
            "batch_size": spec.batch_size,
            "context_length": s.context_length,
            "lr": spec.lr,
            "wall_s": round(time.perf_counter() - t0, 2),
            "device": spec.device,
        }
        df = append_result(spec.table, row)
        log(f"{run['run_id']}: loss {loss:.4f} in {row['wall_s']:.0f} s")
    return df


def spec_dict(spec: SweepSpec) -> dict[str, Any]:
    d = asdict(spec)
    d["shape_rule"] = asdict(spec.shape_rule)
    return d
