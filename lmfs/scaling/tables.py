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
    cols = [c for c in ("n_params", "compute", "tokens", "loss") if c in out]
    problems = _bad_rows(out, cols)
    if problems:
        raise TableError(f"{source}: " + "; ".join(problems))
    if "tokens" not in out:
        out["tokens"] = out["compute"] / (6.0 * out["n_params"])
    if "compute" not in out:
        out["compute"] = 6.0 * out["n_params"] * out["tokens"]
    for col in ("n_params", "compute", "loss", "tokens"):
        out[col] = out[col].astype(float)
    return out


class TableError(ValueError):
    """A scaling table that cannot be fitted: the message names the rows (1-based data rows) and why."""


def _rows(index: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i + 1) for i in index[:limit])
    return f"row{'s' if len(index) > 1 else ''} {shown}{f' (+{len(index) - limit} more)' if len(index) > limit else ''}"


def _bad_rows(df: pd.DataFrame, cols: list[str]) -> list[str]:
    """Values no scaling table may hold: non-numbers, missing/NaN, inf, zero or negative."""
    problems: list[str] = []
    for col in cols:
        raw = df[col]
        num = pd.to_numeric(raw, errors="coerce")
        positions = range(len(df))
        text = [i for i, v, n in zip(positions, raw, num, strict=True) if pd.isna(n) and not _is_missing(v)]
        missing = [i for i, v in zip(positions, raw, strict=True) if _is_missing(v)]
        vals = num.to_numpy(dtype=float)
        inf = [i for i in positions if vals[i] in (float("inf"), float("-inf"))]
        nonpos = [i for i in positions if vals[i] <= 0]
        if text:
            problems.append(f"{col} is not a number in {_rows(text)} (e.g. {raw.iloc[text[0]]!r})")
        if missing:
            problems.append(f"{col} is missing or NaN in {_rows(missing)}")
        if inf:
            problems.append(f"{col} is infinite in {_rows(inf)}")
        if nonpos:
            problems.append(f"{col} must be > 0 but is zero or negative in {_rows(nonpos)}")
    return problems


def check_fittable(df: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """``df`` (canonical) when a scaling law can be fitted to it; TableError naming the rows when it has fewer
    than :data:`MIN_ROWS` rows or every row has the same size and budget."""
    if len(df) < MIN_ROWS:
        raise TableError(f"{source}: {len(df)} row(s) (rows 1-{len(df)}); a scaling fit needs at least {MIN_ROWS}")
    if len(df[["n_params", "compute"]].drop_duplicates()) < 2:
        raise TableError(
            f"{source}: all {len(df)} rows have the same n_params and compute (rows 1-{len(df)}): nothing to "
            "fit a law to"
        )
    return df


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v) or (isinstance(v, str) and not v.strip())


#: fewer rows than this cannot be fitted (Approach 3 has five constants)
MIN_ROWS = 5


def duplicate_rows(df: pd.DataFrame) -> list[list[int]]:
    """Groups of exactly identical rows (canonical columns), as 0-based positions; each group has >= 2."""
    cols = [c for c in ("n_params", "compute", "tokens", "loss") if c in df]
    groups: dict[tuple, list[int]] = {}
    for pos, key in enumerate(df[cols].itertuples(index=False, name=None)):
        groups.setdefault(key, []).append(pos)
    return [g for g in groups.values() if len(g) > 1]


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
