"""The three Chinchilla approaches on one table, side by side, with bootstrap intervals at target budgets.

:func:`analyze_table` returns a JSON-ready dict (what ``lmfs scaling fit`` prints and stores under
``reports/data/scaling/``, and what the report section reads):

``{"table", "rows", "budgets", "targets", "n_boot", "approaches": {"1": …, "2": …, "3": …}}`` where each
approach has its exponents, per-target predictions ``n_opt``/``d_opt``/``loss`` with 95% percentile
intervals (``*_lo``, ``*_hi``), and notes. Approach 3 also has the five constants and their intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmfs.scaling.isoflop import bootstrap_isoflop, fit_isoflop
from lmfs.scaling.parametric import ChinchillaParams, bootstrap_chinchilla, fit_chinchilla

TARGETS = (1e23, 1e24)
CI = (2.5, 97.5)


def _interval(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(v, CI)
    return float(lo), float(hi)


def isoflop_summary(
    df: pd.DataFrame, approach: int, targets: Sequence[float], n_boot: int, seed: int
) -> dict[str, Any]:
    fit = fit_isoflop(df, approach)
    n, d = fit.predict(targets)
    loss = fit.loss_law(targets)
    boot = bootstrap_isoflop(df, approach, targets, n_boot=n_boot, seed=seed) if n_boot else pd.DataFrame()
    preds = []
    for i, c in enumerate(targets):
        row: dict[str, Any] = {
            "compute": float(c),
            "n_opt": float(n[i]),
            "d_opt": float(d[i]),
            "loss": float(loss[i]),
        }
        if len(boot):
            b = boot[np.isclose(boot["compute"], c)]
            for col, key in (("n_opt", "n_opt"), ("d_opt", "d_opt"), ("loss_opt", "loss")):
                row[f"{key}_lo"], row[f"{key}_hi"] = _interval(b[col])
        preds.append(row)
    out: dict[str, Any] = {
        "a": fit.n_law.a,
        "b": fit.d_law.a,
        "k_n": fit.n_law.k,
        "k_d": fit.d_law.k,
        "loss_exponent": fit.loss_law.a,
        "predictions": preds,
        "notes": fit.notes,
        "optima": fit.optima.to_dict(orient="records"),
    }
    if len(boot):
        per_boot = boot.drop_duplicates("boot")
        out["a_lo"], out["a_hi"] = _interval(per_boot["a"])
        out["b_lo"], out["b_hi"] = _interval(per_boot["b"])
        out["n_boot_ok"] = int(per_boot.shape[0])
    return out


def _usable(p: ChinchillaParams) -> bool:
    """A law whose compute-optimal allocation is real: positive A, B, alpha, beta."""
    return all(np.isfinite(v) and v > 0 for v in (p.A, p.B, p.alpha, p.beta))


def parametric_summary(
    df: pd.DataFrame, targets: Sequence[float], n_boot: int, seed: int, progress: bool = False
) -> dict[str, Any]:
    fit = fit_chinchilla(df["n_params"], df["tokens"], df["loss"])
    p = fit.params
    if not _usable(p):
        raise ValueError(
            f"the fitted law is degenerate (A={p.A:.3g}, B={p.B:.3g}, alpha={p.alpha:.3g}, beta={p.beta:.3g}): "
            "the table does not constrain it; add runs at more sizes and budgets"
        )
    boots: list[ChinchillaParams] = []
    dropped = 0
    if n_boot:
        boots = bootstrap_chinchilla(
            df["n_params"], df["tokens"], df["loss"], n_boot=n_boot, seed=seed, base=fit, progress=progress
        )
        kept = [b for b in boots if _usable(b)]
        dropped, boots = len(boots) - len(kept), kept
    n, d = p.allocation(targets)
    loss = p.optimal_loss(targets)
    preds = []
    for i, c in enumerate(targets):
        row: dict[str, Any] = {
            "compute": float(c),
            "n_opt": float(n[i]),
            "d_opt": float(d[i]),
            "loss": float(loss[i]),
        }
        if boots:
            nb = [float(b.allocation(c)[0]) for b in boots]
            db = [float(b.allocation(c)[1]) for b in boots]
            lb = [float(b.optimal_loss(c)) for b in boots]
            row["n_opt_lo"], row["n_opt_hi"] = _interval(nb)
            row["d_opt_lo"], row["d_opt_hi"] = _interval(db)
            row["loss_lo"], row["loss_hi"] = _interval(lb)
        preds.append(row)
    out: dict[str, Any] = {
        "params": p.as_dict(),
        "a": p.a,
        "b": p.b,
        "objective": fit.objective,
        "n_starts": fit.n_starts,
        "converged": fit.converged,
        "predictions": preds,
        "notes": [f"{dropped} of {n_boot} bootstrap fits were degenerate and left out"] if dropped else [],
    }
    if boots:
        ci = {k: _interval([getattr(b, k) for b in boots]) for k in ("E", "A", "B", "alpha", "beta")}
        ci["a"] = _interval([b.a for b in boots])
        out["ci"] = ci
        out["a_lo"], out["a_hi"] = ci["a"]
    return out


def analyze_table(
    df: pd.DataFrame,
    *,
    name: str = "table",
    approaches: Sequence[int] = (1, 2, 3),
    targets: Sequence[float] = TARGETS,
    n_boot: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit the requested approaches on a canonical table (``n_params, compute, tokens, loss``)."""
    out: dict[str, Any] = {
        "table": name,
        "rows": len(df),
        "budgets": int(df["compute"].nunique()),
        "targets": [float(t) for t in targets],
        "n_boot": n_boot,
        "approaches": {},
    }
    for ap in approaches:
        if ap in (1, 2):
            try:
                out["approaches"][str(ap)] = isoflop_summary(df, ap, targets, n_boot, seed)
            except ValueError as exc:
                out["approaches"][str(ap)] = {"error": str(exc)}
        elif ap == 3:
            try:
                out["approaches"]["3"] = parametric_summary(df, targets, n_boot, seed, progress)
            except ValueError as exc:
                out["approaches"]["3"] = {"error": str(exc)}
        else:
            raise ValueError(f"unknown approach {ap}; use 1, 2 or 3")
    return out


def predictions_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per (approach, target budget) from an :func:`analyze_table` summary."""
    rows = []
    for ap, res in summary["approaches"].items():
        for p in res.get("predictions", []):
            rows.append({"table": summary["table"], "approach": int(ap), "a": res.get("a"), **p})
    return pd.DataFrame(rows)
