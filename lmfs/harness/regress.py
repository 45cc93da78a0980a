"""Regression detection on the bench store: a regression is a regression of lmfs, not of the machine.

* :func:`compare_frames` / :func:`compare_commits` — two runs on one machine. lmfs's benchmarks are judged
  **against their same-run peer** (the other impls of their ``benchmark.group``, e.g. tiktoken, torch SDPA):
  the *relative ratio* is ``(lmfs_B / peer_B) / (lmfs_A / peer_A)`` (> 1: lmfs got slower relative to its
  peer), and the rank test is a two-sided Mann–Whitney U on the per-round ratios (each raw lmfs round divided
  by the median of its peer in the same run). A box that is uniformly busier in B slows lmfs and peer alike
  and flags nothing. A benchmark is ``REGRESSION`` (or ``improvement``) only when **both** the ratio is beyond
  the threshold and the rank test rejects at ``alpha``. Several peers in a group: their geometric mean.
  Benchmarks without a peer in both runs are judged on absolute time (basis ``absolute (no peer)``); when
  either run was taken under load (see :func:`lmfs.harness.machine.run_load`) an absolute slowdown is reported
  as ``slower (under load)``, not as a regression, since the machine alone can explain it. Peers are the
  yardstick and are never flagged (verdict ``peer``).
* **Spread.** Load that changes *while* a run goes (lmfs measured at a busier moment than its peer) does not
  cancel in the ratio and is not seen by the per-round test either. It shows as the spread of the relative
  ratios of all lmfs benchmarks compared (most of which a commit does not touch): with at least
  ``MIN_FOR_SPREAD`` of them, a flag also needs ``|log rel_ratio| > SPREAD_Z × sigma`` (sigma = 1.4826 × MAD
  of the log relative ratios); a change beyond the threshold but inside that spread reads ``within spread``.
  On a quiet box the spread is a few percent and changes nothing; the frame's ``attrs["spread"]`` holds sigma.
* ``inconclusive``: the rounds are too few for the rank test to *ever* reach ``alpha`` (the smallest two-sided
  exact p-value of Mann–Whitney with n and m rounds is 2 / C(n + m, n); 3 vs 3 rounds cannot go below 0.1), or
  a side has fewer than 3 raw rounds. Such a benchmark is not called "same".
* :func:`change_points` — binary segmentation on the log of one benchmark's history (lmfs / peer ratio where
  it has a peer, absolute median otherwise). A split is kept when its CUSUM statistic
  ``|mean_l - mean_r| / (sigma * sqrt(1/n_l + 1/n_r))`` exceeds ``z`` **and** the step is at least
  ``min_ratio`` (sigma: robust MAD of successive differences, floored at ``sigma_floor``).
  :func:`history_changes` then keeps a change point only when the rounds around it agree (Mann–Whitney).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

MIN_ROUNDS = 3
ABSOLUTE = "absolute (no peer)"
SPREAD_Z = 3.0
MIN_FOR_SPREAD = 5


def is_peer(impl: str) -> bool:
    """Peers are every impl that is not lmfs itself or a variant of it (``lmfs-…``)."""
    return not str(impl).startswith("lmfs")


def min_p_value(n: int, m: int) -> float:
    """The smallest two-sided p-value Mann–Whitney U can give with ``n`` and ``m`` untied rounds."""
    if n < 1 or m < 1:
        return 1.0
    return min(1.0, 2.0 / math.comb(n + m, n))


def can_reach(n: int, m: int, alpha: float) -> bool:
    """Whether ``n`` vs ``m`` rounds can ever give p < ``alpha``."""
    return n >= MIN_ROUNDS and m >= MIN_ROUNDS and min_p_value(n, m) < alpha


def mann_whitney_p(a: Sequence[float] | None, b: Sequence[float] | None) -> float | None:
    """Two-sided Mann–Whitney U p-value, or None when either side has too few raw rounds."""
    if a is None or b is None or len(a) < MIN_ROUNDS or len(b) < MIN_ROUNDS:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(list(a), list(b), alternative="two-sided").pvalue)


def verdict(ratio: float, p: float | None, threshold: float, alpha: float) -> str:
    """``REGRESSION`` / ``improvement`` (ratio beyond the threshold AND p < alpha), ``same``, or
    ``inconclusive`` when there is no p-value (too few rounds)."""
    if p is None:
        return "inconclusive"
    beyond_slow = ratio > 1.0 + threshold
    beyond_fast = ratio < 1.0 / (1.0 + threshold)
    if beyond_slow and p < alpha:
        return "REGRESSION"
    if beyond_fast and p < alpha:
        return "improvement"
    return "same"


def _geomean(values: Sequence[float]) -> float:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return float(math.exp(sum(math.log(v) for v in vals) / len(vals))) if vals else math.nan


def with_peers(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus, per row: ``peer`` (the peers' names in its run and group, "" for none or for a peer row),
    ``peer_median`` (their geometric-mean median, NaN without), ``rel`` (median / peer_median) and
    ``rel_data`` (each raw round / peer_median, or None)."""
    out = df.copy()
    peer_names, peer_meds = [], []
    keys = ["machine_id", "commit", "group"]
    groups = {k: g for k, g in df.groupby(keys, sort=False)} if not df.empty else {}
    for r in df.itertuples():
        g = groups.get((r.machine_id, r.commit, r.group))
        peers = g[g["impl"].map(is_peer)] if g is not None else None
        if is_peer(r.impl) or peers is None or peers.empty:
            peer_names.append("")
            peer_meds.append(math.nan)
            continue
        peer_names.append("+".join(sorted(peers["impl"].astype(str))))
        peer_meds.append(_geomean(peers["median"].tolist()))
    out["peer"] = peer_names
    out["peer_median"] = peer_meds
    out["rel"] = out["median"] / out["peer_median"]
    out["rel_data"] = [
        [x / pm for x in d] if d and pm == pm else None
        for d, pm in zip(out["data"], out["peer_median"], strict=True)
    ]
    return out


def _known(x: object) -> int | None:
    return int(x) if isinstance(x, int | float) and x == x else None


def _loaded(frame: pd.DataFrame) -> bool:
    return bool("loaded" in frame.columns and frame["loaded"].fillna(False).astype(bool).any())


COMPARE_COLUMNS = ["benchmark", "group", "impl", "basis", "median_a", "median_b", "ratio", "peer_ratio",
                   "rel_ratio", "rounds", "p_value", "verdict"]


def compare_frames(
    a: pd.DataFrame, b: pd.DataFrame, threshold: float = 0.10, alpha: float = 0.01
) -> pd.DataFrame:
    """Per benchmark present in both frames (rows of one run each): medians, absolute ratio b/a, the peers'
    ratio b/a, the relative ratio (absolute / peers'), the rounds compared, p-value and verdict (module
    docstring). ``basis`` says what a row was judged on: ``peer: <names>``, ``absolute (no peer)``, or
    ``peer of lmfs`` (a peer row, verdict ``peer``)."""
    a, b = with_peers(a), with_peers(b)
    loaded = _loaded(a) or _loaded(b)
    rows = []
    b_by = {r.benchmark: r for r in b.itertuples()}
    for ra in a.itertuples():
        rb = b_by.get(ra.benchmark)
        if rb is None:
            continue
        ratio = rb.median / ra.median if ra.median > 0 else math.inf
        peer_ratio = rel_ratio = math.nan
        na, nb = len(ra.data or []), len(rb.data or [])
        if is_peer(ra.impl):
            basis, p, v = "peer of lmfs", None, "peer"
        elif ra.peer and rb.peer and ra.peer == rb.peer:
            basis = f"peer: {ra.peer}"
            peer_ratio = rb.peer_median / ra.peer_median
            rel_ratio = ratio / peer_ratio
            p = mann_whitney_p(ra.rel_data, rb.rel_data)
            v = verdict(rel_ratio, p, threshold, alpha) if can_reach(na, nb, alpha) else "inconclusive"
        else:
            basis = ABSOLUTE
            p = mann_whitney_p(ra.data, rb.data)
            v = verdict(ratio, p, threshold, alpha) if can_reach(na, nb, alpha) else "inconclusive"
            if loaded and v in ("REGRESSION", "improvement"):
                v = "slower (under load)" if v == "REGRESSION" else "faster (under load)"
        ta, tb = _known(getattr(ra, "threads", None)), _known(getattr(rb, "threads", None))
        if ta is not None and tb is not None and ta != tb and v != "peer":
            v = f"not comparable (threads {ta} vs {tb})"
        rows.append({
            "benchmark": ra.benchmark, "group": ra.group, "impl": ra.impl, "basis": basis,
            "median_a": ra.median, "median_b": rb.median, "ratio": ratio, "peer_ratio": peer_ratio,
            "rel_ratio": rel_ratio, "rounds": f"{na}/{nb}", "p_value": p, "verdict": v,
        })
    table = pd.DataFrame(rows, columns=COMPARE_COLUMNS)
    return _apply_spread(table)


def relative_spread(table: pd.DataFrame) -> float | None:
    """Robust sigma of the log relative ratios of the peer-judged rows, None with fewer than MIN_FOR_SPREAD."""
    judged = table[table["basis"].str.startswith("peer: ") & ~table["verdict"].str.startswith("not comparable")]
    logs = np.log(judged["rel_ratio"].to_numpy(dtype=float))
    logs = logs[np.isfinite(logs)]
    if logs.size < MIN_FOR_SPREAD:
        return None
    return float(1.4826 * np.median(np.abs(logs - np.median(logs))))


def _apply_spread(table: pd.DataFrame) -> pd.DataFrame:
    sigma = relative_spread(table) if not table.empty else None
    table.attrs["spread"] = sigma
    if sigma is None:
        return table
    flagged = table["verdict"].isin(["REGRESSION", "improvement"]) & table["basis"].str.startswith("peer: ")
    inside = np.abs(np.log(table["rel_ratio"].to_numpy(dtype=float))) <= SPREAD_Z * sigma
    table.loc[flagged & inside, "verdict"] = "within spread"
    return table


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
    """Change points of every lmfs benchmark's history, per machine: machine_id, benchmark, basis, commit where
    the new level starts, previous commit, level ratio (after / before medians of the segments), kind, p-value.

    The series is lmfs's time relative to its same-run peer (``rel``) where every run of it has one, else the
    absolute median (basis ``absolute (no peer)``); peers themselves are the yardstick and get no change points.
    A change point must be confirmed by the rounds: Mann–Whitney U between the (per-round ratio or raw) rounds
    of up to ``window`` runs before and after it (within the neighbouring segments) must give p < ``alpha``; a
    level shift made of one run's noisy rounds (a busy box) is dropped. Where the pooled rounds are too few for
    the test to reach ``alpha`` the change point is kept as unconfirmed (kind ends in ``?``)."""
    rows = []
    df = with_peers(df)
    # a thread count is its own series: runs on 1 and on 2 threads are not one history
    for (machine, bench, _threads), g in df.groupby(["machine_id", "benchmark", "threads"], sort=True,
                                                    dropna=False):
        if is_peer(g["impl"].iloc[0]):
            continue
        g = g.sort_values("order")
        relative = bool(g["peer"].astype(bool).all())
        med = (g["rel"] if relative else g["median"]).to_numpy(dtype=float)
        data = (g["rel_data"] if relative else g["data"]).tolist()
        commits = g["commit"].tolist()
        cps = change_points(med, **kwargs)
        bounds = [0, *cps, len(med)]
        for j, cp in enumerate(cps):
            before = float(np.median(med[bounds[j]:cp]))
            after = float(np.median(med[cp:bounds[j + 2]]))
            ratio = after / before
            left = _pooled_rounds(data, max(bounds[j], cp - window), cp)
            right = _pooled_rounds(data, cp, min(bounds[j + 2], cp + window))
            p = mann_whitney_p(left, right)
            if p is not None and not can_reach(len(left or []), len(right or []), alpha):
                p = None
            if p is not None and p >= alpha:
                continue
            rows.append(
                {
                    "machine_id": machine,
                    "benchmark": bench,
                    "basis": f"peer: {g['peer'].iloc[-1]}" if relative else ABSOLUTE,
                    "commit": commits[cp],
                    "previous": commits[cp - 1],
                    "index": cp,
                    "ratio": ratio,
                    # "?": too few raw rounds to confirm with the rank test
                    "kind": ("regression" if ratio > 1 else "improvement") + ("?" if p is None else ""),
                    "p_value": p,
                    "_order": float(g["order"].iloc[cp]),
                }
            )
    out = pd.DataFrame(
        rows,
        columns=["machine_id", "benchmark", "basis", "commit", "previous", "index", "ratio", "kind", "p_value",
                 "_order"],
    )
    out = out.sort_values(["machine_id", "benchmark", "_order"], kind="stable").reset_index(drop=True)
    return out.drop(columns=["_order"])
