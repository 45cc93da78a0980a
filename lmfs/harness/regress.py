"""Regression detection on the bench store.

* :func:`compare_runs` — two commits on one machine: ratio of medians (B / A, > 1 is slower) and a two-sided
  Mann–Whitney U test on the raw rounds. A benchmark is flagged ``regression`` (or ``improvement``) only when
  **both** the ratio is beyond the threshold and the rank test rejects "same distribution" at ``alpha``.
* :func:`change_points` — binary segmentation on the log medians of one benchmark's history. A split is kept
  when its CUSUM statistic ``|mean_l - mean_r| / (sigma * sqrt(1/n_l + 1/n_r))`` exceeds ``z`` **and** the
  step is at least ``min_ratio`` (sigma: robust MAD of successive differences, floored at ``sigma_floor``).
  :func:`history_changes` then keeps a change point only when the raw rounds around it agree (Mann–Whitney).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd


def mann_whitney_p(a: Sequence[float] | None, b: Sequence[float] | None) -> float | None:
    """Two-sided Mann–Whitney U p-value, or None when either side has too few raw rounds."""
    if not a or not b or len(a) < 3 or len(b) < 3:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(list(a), list(b), alternative="two-sided").pvalue)


def verdict(ratio: float, p: float | None, threshold: float, alpha: float) -> str:
    beyond_slow = ratio > 1.0 + threshold
    beyond_fast = ratio < 1.0 / (1.0 + threshold)
    if p is None:
        return "slower? (too few rounds)" if beyond_slow else "faster? (too few rounds)" if beyond_fast else "same"
    if beyond_slow and p < alpha:
        return "REGRESSION"
    if beyond_fast and p < alpha:
        return "improvement"
    return "same"


def compare_frames(
    a: pd.DataFrame, b: pd.DataFrame, threshold: float = 0.10, alpha: float = 0.01
) -> pd.DataFrame:
    """Per benchmark present in both frames (rows of one run each): medians, ratio b/a, p-value, verdict."""
    rows = []
    b_by = {r.benchmark: r for r in b.itertuples()}
    for ra in a.itertuples():
        rb = b_by.get(ra.benchmark)
        if rb is None:
            continue
        ratio = rb.median / ra.median if ra.median > 0 else math.inf
        p = mann_whitney_p(ra.data, rb.data)
        rows.append(
            {
                "benchmark": ra.benchmark,
                "group": ra.group,
                "impl": ra.impl,
                "median_a": ra.median,
                "median_b": rb.median,
                "ratio": ratio,
                "p_value": p,
                "verdict": verdict(ratio, p, threshold, alpha),
            }
        )
    return pd.DataFrame(
        rows, columns=["benchmark", "group", "impl", "median_a", "median_b", "ratio", "p_value", "verdict"]
    )


def resolve_commit(df: pd.DataFrame, ref: str) -> str:
    """The stored commit stem a user's ``ref`` (a hash prefix, optionally ``-dirty``) names on this frame."""
    stems = sorted(df["commit"].unique())
    if ref in stems:
        return ref
    matches = [s for s in stems if s.startswith(ref) or (len(ref) > 12 and ref.startswith(s.removesuffix("-dirty")))]
    clean = [s for s in matches if not s.endswith("-dirty")]
    if len(clean) == 1:
        return clean[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise KeyError(f"commit {ref!r} not in the store for this machine; stored: {', '.join(stems) or '(none)'}")
    raise KeyError(f"commit {ref!r} is ambiguous: {', '.join(matches)}")


def compare_commits(
    df: pd.DataFrame, ref_a: str, ref_b: str, machine: str, threshold: float = 0.10, alpha: float = 0.01
) -> tuple[str, str, pd.DataFrame]:
    """Compare two stored commits on ``machine`` (never across machines)."""
    from lmfs.harness.history import check_machine

    check_machine(df, machine)
    mdf = df[df["machine_id"] == machine]
    ca, cb = resolve_commit(mdf, ref_a), resolve_commit(mdf, ref_b)
    table = compare_frames(mdf[mdf["commit"] == ca], mdf[mdf["commit"] == cb], threshold, alpha)
    return ca, cb, table


def robust_sigma(x: np.ndarray) -> float:
    """Noise scale of a series from the MAD of its successive differences (insensitive to a few steps)."""
    if x.size < 5:  # too few differences for a robust estimate: the caller's floor applies
        return 0.0
    d = np.diff(x)
    mad = np.median(np.abs(d - np.median(d)))
    return float(1.4826 * mad / math.sqrt(2.0))


def change_points(
    values: Sequence[float],
    z: float = 5.0,
    min_ratio: float = 1.10,
    sigma_floor: float = 0.02,
) -> list[int]:
    """Indices ``i`` where a new level starts (``values[i]`` differs from ``values[i-1]``'s segment).

    ``values`` are positive times in history order. Sorted ascending."""
    x = np.log(np.asarray(values, dtype=float))
    if x.size < 2 or not np.all(np.isfinite(x)):
        return []
    sigma = max(robust_sigma(x), sigma_floor)
    min_step = math.log(min_ratio)
    found: list[int] = []

    def split(lo: int, hi: int) -> None:  # segment x[lo:hi]
        n = hi - lo
        if n < 2:
            return
        seg = x[lo:hi]
        csum = np.cumsum(seg)
        total = csum[-1]
        best, best_k, best_step = 0.0, -1, 0.0
        for k in range(1, n):
            ml = csum[k - 1] / k
            mr = (total - csum[k - 1]) / (n - k)
            stat = abs(ml - mr) / (sigma * math.sqrt(1.0 / k + 1.0 / (n - k)))
            if stat > best:
                best, best_k, best_step = stat, k, abs(ml - mr)
        if best_k > 0 and best > z and best_step >= min_step:
            found.append(lo + best_k)
            split(lo, lo + best_k)
            split(lo + best_k, hi)

    split(0, int(x.size))
    return sorted(found)


def _pooled_rounds(data: list, lo: int, hi: int) -> list[float] | None:
    """Raw rounds of runs ``lo..hi-1`` pooled, or None when any of them has none."""
    pooled: list[float] = []
    for d in data[lo:hi]:
        if not d:
            return None
        pooled.extend(d)
    return pooled


def history_changes(df: pd.DataFrame, alpha: float = 0.01, window: int = 5, **kwargs: float) -> pd.DataFrame:
    """Change points of every benchmark's history, per machine: machine_id, benchmark, commit where the new
    level starts, previous commit, level ratio (after / before medians of the segments), kind, p-value.

    A change point of the medians must be confirmed by the raw rounds: Mann–Whitney U between the rounds of up
    to ``window`` runs before and after it (within the neighbouring segments) must give p < ``alpha``; a
    level shift made of one run's noisy rounds (a busy box) is dropped. Runs without raw rounds skip the test."""
    rows = []
    for (machine, bench), g in df.groupby(["machine_id", "benchmark"], sort=True):
        g = g.sort_values("order")
        med = g["median"].to_numpy()
        data = g["data"].tolist()
        commits = g["commit"].tolist()
        cps = change_points(med, **kwargs)
        bounds = [0, *cps, len(med)]
        for j, cp in enumerate(cps):
            before = float(np.median(med[bounds[j]:cp]))
            after = float(np.median(med[cp:bounds[j + 2]]))
            ratio = after / before
            p = mann_whitney_p(
                _pooled_rounds(data, max(bounds[j], cp - window), cp),
                _pooled_rounds(data, cp, min(bounds[j + 2], cp + window)),
            )
            if p is not None and p >= alpha:
                continue
            rows.append(
                {
                    "machine_id": machine,
                    "benchmark": bench,
                    "commit": commits[cp],
                    "previous": commits[cp - 1],
                    "index": cp,
                    "ratio": ratio,
                    # "?": too few raw rounds to confirm with the rank test
                    "kind": ("regression" if ratio > 1 else "improvement") + ("?" if p is None else ""),
                    "p_value": p,
                }
            )
    return pd.DataFrame(
        rows, columns=["machine_id", "benchmark", "commit", "previous", "index", "ratio", "kind", "p_value"]
    )
