"""Chinchilla Approach 3: the parametric loss ``L(N, D) = E + A/N^α + B/D^β``.

The fit follows Hoffmann et al. (2022) as re-done by Epoch AI (Besiroglu et al., 2024):

* parameters ``θ = (a, b, e, α, β)`` with ``A = exp(a)``, ``B = exp(b)``, ``E = exp(e)``;
* predicted log loss in log-sum-exp form ``log L̂ = LSE(a − α·log N, b − β·log D, e)`` (stable, and every
  θ gives a positive loss);
* objective: the **summed** (not mean) Huber loss, δ = 1e-3, of the residuals ``log L̂ − log L``;
* L-BFGS-B with the analytic gradient and tight tolerances (the summed objective is ~1e-2 in size, so
  scipy's default ``ftol``/``gtol`` would stop far from the optimum — the cause of Chinchilla's too-early fit);
* starting points from Chinchilla's grid (4,500 points); the objective is evaluated at every grid point
  (vectorised, cheap) and L-BFGS-B runs from the ``n_local`` best of them. Running L-BFGS-B from *every* grid
  point is available (``n_local=None``) and finds the same optimum on the Epoch table (see the notes in
  ``reports/data/scaling/README.md``).

Compute-optimal allocation under ``C = 6·N·D``: ``G = (αA/(βB))^(1/(α+β))``,
``N_opt = G·(C/6)^(β/(α+β))``, ``D_opt = G⁻¹·(C/6)^(α/(α+β))``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

HUBER_DELTA = 1e-3

#: Chinchilla's grid of initialisations (Hoffmann et al. 2022, appendix D.2), in θ = (a, b, e, α, β) order.
DEFAULT_GRID: dict[str, npt.NDArray[np.float64]] = {
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
    "e": np.arange(-1.0, 1.5, 0.5),
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
}

#: scipy L-BFGS-B options: tight, because the summed Huber objective is small (~1e-2).
TIGHT_OPTIONS = {"ftol": 1e-15, "gtol": 1e-12, "maxiter": 20_000, "maxfun": 50_000}


@dataclass(frozen=True)
class ChinchillaParams:
    """The five constants of ``L(N, D) = E + A/N^α + B/D^β``."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @classmethod
    def from_theta(cls, theta: Sequence[float]) -> ChinchillaParams:
        """From the optimiser's ``(a, b, e, α, β)`` with ``A, B, E = exp(a), exp(b), exp(e)``."""
        a, b, e, alpha, beta = (float(x) for x in theta)
        return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)

    def theta(self) -> npt.NDArray[np.float64]:
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def loss(self, n_params: npt.ArrayLike, n_tokens: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Predicted loss at ``N`` parameters and ``D`` tokens (broadcasting)."""
        n = np.asarray(n_params, dtype=np.float64)
        d = np.asarray(n_tokens, dtype=np.float64)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    @property
    def a(self) -> float:
        """Exponent of ``N_opt ∝ C^a``: β/(α+β)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of ``D_opt ∝ C^b``: α/(α+β)."""
        return self.alpha / (self.alpha + self.beta)

    def allocation(self, compute: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Compute-optimal ``(N_opt, D_opt)`` for budgets ``C`` (FLOPs) under ``C = 6·N·D``."""
        c = np.asarray(compute, dtype=np.float64)
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n_opt = g * (c / 6.0) ** self.a
        d_opt = (c / 6.0) ** self.b / g
        return n_opt, d_opt

    def optimal_loss(self, compute: npt.ArrayLike) -> npt.NDArray[np.float64]:
        n_opt, d_opt = self.allocation(compute)
        return self.loss(n_opt, d_opt)


@dataclass
class ParametricFit:
    """The result of :func:`fit_chinchilla`."""

    params: ChinchillaParams
    objective: float  #: summed Huber loss at the optimum
    n_starts: int  #: grid points L-BFGS-B ran from
    n_rows: int
    converged: bool
    message: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _as_logs(
    n_params: npt.ArrayLike, n_tokens: npt.ArrayLike, losses: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n = np.asarray(n_params, dtype=np.float64).ravel()
    d = np.asarray(n_tokens, dtype=np.float64).ravel()
    loss = np.asarray(losses, dtype=np.float64).ravel()
    if not (n.shape == d.shape == loss.shape):
        raise ValueError(
            f"fit_chinchilla: n_params, n_tokens and losses must have equal lengths, got {n.size}, {d.size}, "
            f"{loss.size}"
        )
    if n.size < 5:
        raise ValueError(f"fit_chinchilla: need at least 5 rows to fit 5 parameters, got {n.size}")
    for name, arr in (("n_params", n), ("n_tokens", d), ("losses", loss)):
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            bad = int(np.flatnonzero(~np.isfinite(arr) | (arr <= 0))[0])
            raise ValueError(f"fit_chinchilla: {name} must be finite and > 0 (row {bad} is {arr[bad]!r})")
    return np.log(n), np.log(d), np.log(loss)


def huber(
    r: npt.NDArray[np.float64], delta: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Huber loss and its derivative, elementwise: ``r²/2`` inside ``|r| ≤ δ``, ``δ(|r| − δ/2)`` outside."""
    absr = np.abs(r)
    inside = absr <= delta
    value = np.where(inside, 0.5 * r * r, delta * (absr - 0.5 * delta))
    grad = np.where(inside, r, delta * np.sign(r))
    return value, grad


def objective(
    theta: npt.NDArray[np.float64],
    log_n: npt.NDArray[np.float64],
    log_d: npt.NDArray[np.float64],
    log_loss: npt.NDArray[np.float64],
    delta: float = HUBER_DELTA,
) -> tuple[float, npt.NDArray[np.float64]]:
    """Summed Huber loss of log residuals and its gradient w.r.t. ``θ = (a, b, e, α, β)``."""
    a, b, e, alpha, beta = theta
    t = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # (3, rows)
    tmax = t.max(axis=0)
    w = np.exp(t - tmax)
    s = w.sum(axis=0)
    lse = tmax + np.log(s)
    w /= s  # softmax weights: d lse / d t_k
    value, dh = huber(lse - log_loss, delta)
    g1, g2, g3 = (dh * w[0]), (dh * w[1]), (dh * w[2])
    grad = np.array([g1.sum(), g2.sum(), g3.sum(), -(g1 * log_n).sum(), -(g2 * log_d).sum()])
    return float(value.sum()), grad


def grid_points(grid: dict[str, Sequence[float]] | None = None) -> npt.NDArray[np.float64]:
    """All starting points of a grid as a ``(points, 5)`` array in θ order ``(a, b, e, α, β)``."""
    g = DEFAULT_GRID if grid is None else grid
    axes = [np.asarray(g[k], dtype=np.float64) for k in ("a", "b", "e", "alpha", "beta")]
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


def objective_on_grid(
    points: npt.NDArray[np.float64],
    log_n: npt.NDArray[np.float64],
    log_d: npt.NDArray[np.float64],
    log_loss: npt.NDArray[np.float64],
    delta: float = HUBER_DELTA,
) -> npt.NDArray[np.float64]:
    """The objective at many θ at once: ``points (P, 5)`` → ``(P,)``."""
    a, b, e, alpha, beta = (points[:, i : i + 1] for i in range(5))
    t1 = a - alpha * log_n[None, :]
    t2 = b - beta * log_d[None, :]
    t3 = np.broadcast_to(e, t1.shape)
    lse = np.logaddexp(np.logaddexp(t1, t2), t3)
    value, _ = huber(lse - log_loss[None, :], delta)
    return value.sum(axis=1)


_BLAS_LIMIT_DEPTH = 0


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while fitting: L-BFGS-B's tiny BLAS calls on a busy machine are ~10-50×
    slower with OpenBLAS's threads spinning. Uses threadpoolctl when installed, else does nothing.
    Re-entrant: nested uses cost nothing (entering threadpoolctl's limit takes ~2 ms)."""
    global _BLAS_LIMIT_DEPTH
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional speed-up
        yield
        return
    if _BLAS_LIMIT_DEPTH:
        yield
        return
    _BLAS_LIMIT_DEPTH += 1
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        _BLAS_LIMIT_DEPTH -= 1


def _local_fit(
    x0: npt.NDArray[np.float64], logs: tuple[npt.NDArray[np.float64], ...], delta: float
) -> tuple[npt.NDArray[np.float64], float, bool, str]:
    res = minimize(objective, x0, args=(*logs, delta), jac=True, method="L-BFGS-B", options=TIGHT_OPTIONS)
    return res.x, float(res.fun), bool(res.success), str(res.message)


def fit_chinchilla(
    n_params: npt.ArrayLike,
    n_tokens: npt.ArrayLike,
    losses: npt.ArrayLike,
    *,
    delta: float = HUBER_DELTA,
    grid: dict[str, Sequence[float]] | None = None,
    n_local: int | None = 64,
    extra_starts: Sequence[Sequence[float]] = (),
    starts: npt.ArrayLike | None = None,
) -> ParametricFit:
    """Fit ``L = E + A/N^α + B/D^β`` to rows ``(N, D, L)`` (each shape ``(rows,)``).

    ``n_local``: run L-BFGS-B from this many best grid points (by their starting objective); ``None`` runs
    it from every grid point. ``extra_starts`` (θ vectors) are always tried as well. ``starts`` (θ vectors,
    ``(k, 5)``) replaces the grid altogether.
    """
    logs = _as_logs(n_params, n_tokens, losses)
    points = grid_points(grid) if starts is None else np.asarray(starts, dtype=np.float64).reshape(-1, 5)
    if starts is None and n_local is not None and n_local < len(points):
        start_values = objective_on_grid(points, *logs, delta=delta)
        points = points[np.argsort(start_values, kind="stable")[:n_local]]
    if len(extra_starts):
        points = np.vstack([np.asarray(extra_starts, dtype=np.float64).reshape(-1, 5), points])
    best: tuple[npt.NDArray[np.float64], float, bool, str] | None = None
    with single_threaded_blas():
        for x0 in points:
            cand = _local_fit(x0, logs, delta)
            if np.isfinite(cand[1]) and (best is None or cand[1] < best[1]):
                best = cand
    assert best is not None, "no start produced a finite objective"
    x, fun, ok, msg = best
    return ParametricFit(
        params=ChinchillaParams.from_theta(x),
        objective=fun,
        n_starts=len(points),
        n_rows=logs[0].size,
        converged=ok,
        message=msg,
    )


def bootstrap_chinchilla(
    n_params: npt.ArrayLike,
    n_tokens: npt.ArrayLike,
    losses: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    delta: float = HUBER_DELTA,
    n_local: int = 1,
    base: ParametricFit | None = None,
    progress: bool = False,
) -> list[ChinchillaParams]:
    """Refit on ``n_boot`` resamples of the rows (with replacement).

    Each refit starts from the full-data optimum ``base`` plus the ``n_local`` best grid points of the full
    data (chosen once): the full-data optimum is almost always in a resample's basin, and the grid points
    guard against it not being so. (Scoring the whole grid per resample would cost ~35 ms each.)
    """
    n = np.asarray(n_params, dtype=np.float64).ravel()
    d = np.asarray(n_tokens, dtype=np.float64).ravel()
    loss = np.asarray(losses, dtype=np.float64).ravel()
    if base is None:
        base = fit_chinchilla(n, d, loss, delta=delta)
    logs = _as_logs(n, d, loss)
    grid = grid_points()
    best_grid = grid[np.argsort(objective_on_grid(grid, *logs, delta=delta), kind="stable")[:n_local]]
    starts = np.vstack([base.params.theta()[None, :], best_grid])
    rng = np.random.default_rng(seed)
    out: list[ChinchillaParams] = []
    iterator = range(n_boot)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="bootstrap (Approach 3)", unit="fit")
    with single_threaded_blas():
        for _ in iterator:
            idx = rng.integers(0, n.size, size=n.size)
            fit = fit_chinchilla(n[idx], d[idx], loss[idx], delta=delta, starts=starts)
            out.append(fit.params)
    return out
