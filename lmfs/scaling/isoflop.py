"""Chinchilla Approaches 1 and 2 on an isoFLOP table (runs at several compute budgets).

* Approach 1 ("minimum run"): per budget, the run with the lowest loss gives ``N_opt(C)``.
* Approach 2 ("parabola"): per budget, a parabola ``L = p₂·x² + p₁·x + p₀`` in ``x = ln N``; its vertex
  ``x* = −p₁/(2p₂)`` gives ``N_opt(C) = exp(x*)``. Budgets whose parabola opens downwards (``p₂ ≤ 0``) or
  that have fewer than 3 distinct sizes give no vertex and are left out, with a note.

Then power laws ``N_opt = k_N·C^a`` and ``D_opt = k_D·C^b`` over budgets. ``D_opt`` is ``C/(6·N_opt)`` unless
the table has a ``tokens`` column that is not ``C/(6N)`` (a real sweep that spends its budget on exact FLOPs):
then ``D_opt`` is interpolated in log-log between the budget's runs.

Tables use the canonical columns of :mod:`lmfs.scaling.tables`: ``n_params``, ``compute``, ``loss``
(and optionally ``tokens``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from lmfs.scaling.powerlaw import PowerLaw, fit_power_law

APPROACHES = (1, 2)


@dataclass(frozen=True)
class Vertex:
    """The vertex of ``L = p₂x² + p₁x + p₀``: ``x* = −p₁/(2p₂)`` and ``L(x*)``."""

    x: float
    loss: float
    curvature: float  #: p₂ (> 0 for a minimum)


def parabola_vertex(x: npt.ArrayLike, loss: npt.ArrayLike) -> Vertex | None:
    """Least-squares parabola through ``(x, loss)`` (shape ``(n,)``, n ≥ 3 distinct x); None if it opens down."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(loss, dtype=np.float64)
    if np.unique(xs).size < 3:
        return None
    center = xs.mean()  # centring keeps polyfit well conditioned for x = ln N ≈ 20
    p2, p1, p0 = np.polyfit(xs - center, ys, 2)
    if not p2 > 0:
        return None
    xv = -p1 / (2 * p2)
    return Vertex(x=float(xv + center), loss=float(p0 - p1 * p1 / (4 * p2)), curvature=float(p2))


def _tokens_are_c_over_6n(df: pd.DataFrame) -> bool:
    if "tokens" not in df:
        return True
    return bool(np.allclose(df["tokens"], df["compute"] / (6 * df["n_params"]), rtol=1e-6))


def per_budget_optima(df: pd.DataFrame, approach: int) -> pd.DataFrame:
    """One row per budget: ``compute, n_opt, d_opt, loss_opt, n_runs, extrapolated`` (Approach 1 or 2)."""
    if approach not in APPROACHES:
        raise ValueError(f"approach must be 1 or 2 (Approach 3 is lmfs.scaling.parametric), got {approach}")
    missing = {"n_params", "compute", "loss"} - set(df.columns)
    if missing:
        raise ValueError(f"isoFLOP table lacks columns {sorted(missing)}; load it with lmfs.scaling.tables")
    plain_tokens = _tokens_are_c_over_6n(df)
    rows = []
    for c, g in df.groupby("compute", sort=True):
        g = g.sort_values("n_params", kind="stable")
        x = np.log(g["n_params"].to_numpy(dtype=np.float64))
        y = g["loss"].to_numpy(dtype=np.float64)
        if approach == 1:
            i = int(np.argmin(y))
            x_opt, loss_opt, extrap = float(x[i]), float(y[i]), False
        else:
            v = parabola_vertex(x, y)
            if v is None:
                continue
            x_opt, loss_opt = v.x, v.loss
            extrap = not (x.min() <= x_opt <= x.max())
        n_opt = float(np.exp(x_opt))
        if plain_tokens:
            d_opt = float(c) / (6.0 * n_opt)
        else:
            log_d = np.log(g["tokens"].to_numpy(dtype=np.float64))
            if np.unique(x).size < 2:  # a resample with one distinct size: its tokens are all we know
                d_opt = float(np.exp(log_d.mean()))
            else:  # tokens are a smooth function of size at fixed C: a line in log-log
                slope, icpt = np.polyfit(x, log_d, 1)
                d_opt = float(np.exp(icpt + slope * x_opt))
        rows.append(
            {
                "compute": float(c),
                "n_opt": n_opt,
                "d_opt": d_opt,
                "loss_opt": loss_opt,
                "n_runs": len(g),
                "extrapolated": extrap,
            }
        )
    return pd.DataFrame(rows, columns=["compute", "n_opt", "d_opt", "loss_opt", "n_runs", "extrapolated"])


@dataclass
class IsoflopFit:
    """Power laws over the per-budget optima of one approach."""

    approach: int
    optima: pd.DataFrame
    n_law: PowerLaw  #: N_opt = k·C^a
    d_law: PowerLaw  #: D_opt = k·C^b
    loss_law: PowerLaw  #: L_opt = k·C^c (a plain power law through the per-budget minima)
    notes: list[str] = field(default_factory=list)

    def predict(self, compute: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """``(N_opt, D_opt)`` at budgets ``compute``."""
        return self.n_law(compute), self.d_law(compute)


def fit_isoflop(df: pd.DataFrame, approach: int = 2) -> IsoflopFit:
    """Approach 1 or 2 on a table with columns ``n_params, compute, loss`` (+ optional ``tokens``)."""
    opt = per_budget_optima(df, approach)
    notes = []
    n_budgets = df["compute"].nunique()
    if len(opt) < n_budgets:
        notes.append(
            f"{n_budgets - len(opt)} of {n_budgets} budgets gave no parabola vertex (too few sizes or "
            "concave) and were left out"
        )
    if opt["extrapolated"].any():
        notes.append(f"{int(opt['extrapolated'].sum())} vertices lie outside their budget's sampled sizes")
    if len(opt) < 2:
        raise ValueError(
            f"Approach {approach}: only {len(opt)} budget(s) gave an optimum; need 2 or more for a "
            "power law (add budgets, or more sizes per budget around the minimum)"
        )
    return IsoflopFit(
        approach=approach,
        optima=opt,
        n_law=fit_power_law(opt["compute"], opt["n_opt"]),
        d_law=fit_power_law(opt["compute"], opt["d_opt"]),
        loss_law=fit_power_law(opt["compute"], opt["loss_opt"]),
        notes=notes,
    )


def bootstrap_isoflop(
    df: pd.DataFrame, approach: int, targets: Sequence[float], *, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Refit on ``n_boot`` resamples of the runs (with replacement, within each budget) and predict at
    ``targets``. Returns one row per (resample, target): ``boot, compute, n_opt, d_opt, loss_opt, a, b``.
    Resamples whose fit fails (fewer than 2 usable budgets) are skipped."""
    rng = np.random.default_rng(seed)
    groups = [g for _, g in df.groupby("compute", sort=True)]
    tgt = np.asarray(targets, dtype=np.float64)
    rows = []
    for i in range(n_boot):
        parts = [g.iloc[rng.integers(0, len(g), size=len(g))] for g in groups]
        try:
            fit = fit_isoflop(pd.concat(parts, ignore_index=True), approach)
        except ValueError:
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # a wild resample may overflow; it becomes inf
            n, d = fit.predict(tgt)
            loss = fit.loss_law(tgt)
        for c, nn, dd, ll in zip(tgt, n, d, loss, strict=True):
            rows.append(
                {
                    "boot": i,
                    "compute": c,
                    "n_opt": nn,
                    "d_opt": dd,
                    "loss_opt": ll,
                    "a": fit.n_law.a,
                    "b": fit.d_law.a,
                }
            )
    return pd.DataFrame(rows)
