"""Reading scaling tables into pandas with canonical columns.

Canonical columns: ``n_params`` (N), ``compute`` (C, training FLOPs), ``loss``, ``tokens`` (D). Column names of
the stored tables are mapped onto them (``Model Size``/``parameters`` → ``n_params``, ``Training FLOP``/
``compute_budget`` → ``compute``, ``final_loss`` → ``loss``, ...). A table without ``tokens`` gets
``D = C/(6N)``; one without ``compute`` gets ``C = 6ND``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lmfs.paths import shared_data

ALIASES = {
    "n_params": ("n_params", "parameters", "Model Size", "params", "N"),
    "compute": ("compute", "compute_budget", "Training FLOP", "flops", "C"),
    "loss": ("loss", "final_loss", "val_loss", "L"),
    "tokens": ("tokens", "n_tokens", "D"),
}

#: names accepted by :func:`load_named` (and ``lmfs scaling fit --table``)
NAMED_TABLES = ("epoch", "isoflops", "sweep")


def canonical(df: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """Rename known aliases to the canonical columns and fill ``tokens``/``compute``; other columns stay."""
    out = df.copy()
    for canon, names in ALIASES.items():
        if canon in out.columns:
            continue
        for name in names:
            if name in out.columns:
                out = out.rename(columns={name: canon})
                break
    if "n_params" not in out or "loss" not in out or ("compute" not in out and "tokens" not in out):
        raise ValueError(
            f"{source}: needs columns for parameters, loss and compute (or tokens); found {list(df.columns)}. "
            f"Accepted names: {ALIASES}"
        )
    if "tokens" not in out:
        out["tokens"] = out["compute"] / (6.0 * out["n_params"])
    if "compute" not in out:
        out["compute"] = 6.0 * out["n_params"] * out["tokens"]
    for col in ("n_params", "compute", "loss", "tokens"):
        out[col] = out[col].astype(float)
    return out


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, JSON (list of records) or JSONL file as a canonical table."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"scaling table not found: {p} (pass a CSV/JSON/JSONL with N, C or D, loss)")
    if p.suffix == ".csv":
        df = pd.read_csv(p)
    elif p.suffix == ".jsonl":
        df = pd.read_json(p, lines=True)
    elif p.suffix == ".json":
        with open(p, encoding="utf-8") as fh:
            df = pd.DataFrame(json.load(fh))
    else:
        raise ValueError(f"{p}: unknown table format {p.suffix!r}; use .csv, .json or .jsonl")
    return canonical(df, str(p))


def load_epoch_table(path: str | Path | None = None, drop_highest: int = 5) -> pd.DataFrame:
    """Epoch AI's extraction of Chinchilla's Figure 4 (245 rows), minus the ``drop_highest`` highest-loss rows
    (Epoch fits 240), with ``D = C/(6N)``."""
    df = read_table(path or shared_data("scaling", "chinchilla_epoch_extracted.csv"))
    df = df[["n_params", "compute", "tokens", "loss"]]
    if drop_highest:
        df = df.drop(df["loss"].nlargest(drop_highest).index)
    return df.reset_index(drop=True)


def load_isoflops_table(path: str | Path | None = None) -> pd.DataFrame:
    """The CS336 isoFLOP table (72 runs: 9 budgets × 8 sizes) with ``D = C/(6N)``."""
    df = read_table(path or shared_data("scaling", "isoflops_curves.json"))
    return df[["n_params", "compute", "tokens", "loss"]].reset_index(drop=True)


def load_named(name_or_path: str) -> pd.DataFrame:
    """``epoch``, ``isoflops``, ``sweep`` (reports/data/scaling/sweep_cpu.csv) or a path to a table."""
    if name_or_path == "epoch":
        return load_epoch_table()
    if name_or_path == "isoflops":
        return load_isoflops_table()
    if name_or_path == "sweep":
        from lmfs.paths import reports_dir

        return read_table(reports_dir() / "data" / "scaling" / "sweep_cpu.csv")
    return read_table(name_or_path)
