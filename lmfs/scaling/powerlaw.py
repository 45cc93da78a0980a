"""Power laws ``y = k·x^a`` fitted by least squares in log space (``log y = log k + a·log x``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats


@dataclass(frozen=True)
class PowerLaw:
    """``y = k · x^a``."""

    k: float
    a: float

    def __call__(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.k * np.asarray(x, dtype=np.float64) ** self.a


def fit_power_law(x: npt.ArrayLike, y: npt.ArrayLike) -> PowerLaw:
    """Fit ``y = k·x^a`` to points ``x, y`` (shape ``(n,)``, all > 0, at least 2 distinct ``x``)."""
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"fit_power_law: x and y differ in length ({xs.size} vs {ys.size})")
    if np.any(xs <= 0) or np.any(ys <= 0) or not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        raise ValueError("fit_power_law: x and y must be finite and > 0 (a power law is fitted in log space)")
    if np.unique(xs).size < 2:
        raise ValueError(f"fit_power_law: need at least 2 distinct x values, got {np.unique(xs).size}")
    res = stats.linregress(np.log(xs), np.log(ys))
    return PowerLaw(k=float(np.exp(res.intercept)), a=float(res.slope))
