"""Scaling-law fit benchmarks on the Epoch table (240 rows of Chinchilla's Figure 4), CPU, BLAS on one thread.

* ``scaling-approach3-fit-epoch``: one Approach-3 fit (grid of 4,500 starts scored, L-BFGS-B from the best 64)
  — lmfs (analytic gradient) vs a ``scipy-fd`` peer (the same objective written with ``scipy.special.huber``
  and ``np.logaddexp``, the same starts and tolerances, finite-difference gradients).
* ``scaling-approach3-bootstrap-epoch`` (slow): the fit plus 1,000 bootstrap resamples; the target is
  under 30 s on the 2-core box (``extra_info["target_s"]``).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import huber

from lmfs.paths import has_shared_data
from lmfs.scaling.parametric import (
    TIGHT_OPTIONS,
    bootstrap_chinchilla,
    fit_chinchilla,
    grid_points,
    objective_on_grid,
    single_threaded_blas,
)
from lmfs.scaling.tables import load_epoch_table

pytestmark = pytest.mark.skipif(not has_shared_data("scaling"), reason="needs ../shared/data/scaling")


def _peer_fit(n, d, loss, n_local: int = 64) -> np.ndarray:
    """A straightforward implementation: summed scipy Huber of log residuals, numerical gradients."""
    ln, ld, ll = np.log(n), np.log(d), np.log(loss)

    def f(t: np.ndarray) -> float:
        a, b, e, alpha, beta = t
        pred = np.logaddexp(np.logaddexp(a - alpha * ln, b - beta * ld), e)
        return float(huber(1e-3, pred - ll).sum())

    pts = grid_points()
    pts = pts[np.argsort(objective_on_grid(pts, ln, ld, ll), kind="stable")[:n_local]]
    best = None
    with single_threaded_blas():
        for x0 in pts:
            r = minimize(f, x0, method="L-BFGS-B", options=TIGHT_OPTIONS)
            if best is None or r.fun < best.fun:
                best = r
    return best.x


@pytest.mark.parametrize("impl", ["lmfs", "scipy-fd"])
def test_approach3_fit_epoch(benchmark, impl):
    t = load_epoch_table()
    n, d, loss = (t[c].to_numpy() for c in ("n_params", "tokens", "loss"))
    benchmark.group = "scaling-approach3-fit-epoch"
    benchmark.extra_info.update(impl=impl, rows=len(t))
    if impl == "lmfs":
        res = benchmark.pedantic(lambda: fit_chinchilla(n, d, loss), rounds=5, iterations=1, warmup_rounds=1)
        assert res.params.E == pytest.approx(1.8172, rel=1e-3)
    else:
        x = benchmark.pedantic(lambda: _peer_fit(n, d, loss), rounds=3, iterations=1, warmup_rounds=0)
        assert np.exp(x[2]) == pytest.approx(1.8172, rel=2e-3)


@pytest.mark.slow
def test_approach3_bootstrap_1000_epoch(benchmark):
    t = load_epoch_table()
    n, d, loss = (t[c].to_numpy() for c in ("n_params", "tokens", "loss"))
    benchmark.group = "scaling-approach3-bootstrap-epoch"
    benchmark.extra_info.update(impl="lmfs", rows=len(t), resamples=1000, target_s=30.0)

    def run():
        base = fit_chinchilla(n, d, loss)
        return bootstrap_chinchilla(n, d, loss, n_boot=1000, seed=0, base=base)

    boots = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert len(boots) == 1000
    alphas = np.array([b.alpha for b in boots])
    assert 0.3 < np.median(alphas) < 0.4
