"""Regressions are judged against the same-run peer: a uniformly loaded box flags nothing, lmfs slowing alone
does, too few rounds say "inconclusive", benchmarks without a peer say they were judged on absolute time."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmfs.harness.history import runs_frame
from lmfs.harness.machine import format_load, run_load
from lmfs.harness.regress import ABSOLUTE, can_reach, compare_frames, history_changes, min_p_value
from lmfs.harness.store import Run
from tests.harness.synthetic import bench_doc, bench_entry, rounds


def _run(commit: str, ours: float, peer: float | None, *, n: int = 15, seed: int = 0, when: str = "2026-01-01",
         load: dict | None = None, threads: int = 1, extra: list | None = None) -> Run:
    entries = [bench_entry("b.py::ours", rounds(ours, n=n, seed=seed), group="g", impl="lmfs", threads=threads)]
    if peer is not None:
        entries.append(bench_entry("b.py::peer", rounds(peer, n=n, seed=seed + 1), group="g", impl="torch",
                                   threads=threads))
    doc = bench_doc(entries + (extra or []), when=when)
    if load is not None:
        doc["load"] = load
    return Run("cpu-test-2c", commit, None, doc)  # type: ignore[arg-type]


def _compare(*runs: Run) -> pd.DataFrame:
    df = runs_frame(list(runs), log=[])
    a, b = runs[0].commit, runs[1].commit
    return compare_frames(df[df.commit == a], df[df.commit == b]).set_index("benchmark")


BUSY = {"start": [5.1, 4.0, 3.0], "end": [5.3, 4.2, 3.1], "cpus": 2}
QUIET = {"start": [0.2, 0.3, 0.3], "end": [1.0, 0.5, 0.4], "cpus": 2}


def test_lmfs_and_peer_both_slower_by_1_4_flags_nothing() -> None:
    table = _compare(_run("aaaa", 0.010, 0.008, seed=1, load=QUIET),
                     _run("bbbb", 0.014, 0.0112, seed=3, when="2026-01-02", load=BUSY))
    ours = table.loc["b.py::ours"]
    assert ours["basis"] == "peer: torch"
    assert ours["ratio"] == pytest.approx(1.4, rel=0.05)  # slower in absolute terms ...
    assert ours["rel_ratio"] == pytest.approx(1.0, abs=0.05)  # ... but not relative to the peer
    assert ours["verdict"] == "same"
    assert table.loc["b.py::peer", "verdict"] == "peer"
    assert not table["verdict"].str.contains("REGRESSION").any()


def test_the_same_slowdown_judged_on_absolute_time_would_flag() -> None:
    """The contrast: without the peer (and without a load record) the 1.4x machine slowdown is flagged."""
    table = _compare(_run("aaaa", 0.010, None, seed=1), _run("bbbb", 0.014, None, seed=3, when="2026-01-02"))
    assert table.loc["b.py::ours", "basis"] == ABSOLUTE
    assert table.loc["b.py::ours", "verdict"] == "REGRESSION"


def test_no_peer_under_load_is_marked_not_flagged() -> None:
    table = _compare(_run("aaaa", 0.010, None, seed=1, load=QUIET),
                     _run("bbbb", 0.014, None, seed=3, when="2026-01-02", load=BUSY))
    assert table.loc["b.py::ours", "basis"] == ABSOLUTE
    assert table.loc["b.py::ours", "verdict"] == "slower (under load)"


def test_lmfs_alone_slower_by_1_2_flags() -> None:
    table = _compare(_run("aaaa", 0.010, 0.008, seed=1), _run("bbbb", 0.012, 0.008, seed=3, when="2026-01-02"))
    ours = table.loc["b.py::ours"]
    assert ours["rel_ratio"] == pytest.approx(1.2, rel=0.05)
    assert ours["p_value"] < 0.01
    assert ours["verdict"] == "REGRESSION"


def test_lmfs_alone_faster_is_an_improvement_even_on_a_busier_box() -> None:
    # box 1.5x busier, lmfs 1.3x faster relative to its peer: absolute time barely moves
    table = _compare(_run("aaaa", 0.010, 0.008, seed=1),
                     _run("bbbb", 0.010 * 1.5 / 1.3, 0.008 * 1.5, seed=3, when="2026-01-02", load=BUSY))
    assert table.loc["b.py::ours", "verdict"] == "improvement"


@settings(max_examples=25, deadline=None)
@given(factor=st.floats(1.0, 3.0), seed=st.integers(0, 10**6), n=st.integers(5, 30))
def test_a_uniformly_loaded_box_never_flags(factor: float, seed: int, n: int) -> None:
    table = _compare(_run("aaaa", 0.010, 0.006, n=n, seed=seed),
                     _run("bbbb", 0.010 * factor, 0.006 * factor, n=n, seed=seed + 7, when="2026-01-02"))
    assert table.loc["b.py::ours", "verdict"] in ("same", "inconclusive")


def test_too_few_rounds_is_inconclusive_not_same() -> None:
    # lmfs 1.5x slower relative to its peer, but 3 vs 3 rounds cannot reach p < 0.01
    table = _compare(_run("aaaa", 0.010, 0.008, n=3, seed=1), _run("bbbb", 0.015, 0.008, n=3, seed=3, when="x"))
    assert table.loc["b.py::ours", "verdict"] == "inconclusive"
    assert table.loc["b.py::ours", "rounds"] == "3/3"
    # and with no change at all it is still inconclusive, not "same"
    table = _compare(_run("aaaa", 0.010, 0.008, n=3, seed=1), _run("bbbb", 0.010, 0.008, n=3, seed=3, when="x"))
    assert table.loc["b.py::ours", "verdict"] == "inconclusive"


@pytest.mark.parametrize("n,m", [(3, 3), (3, 4), (4, 4), (5, 5), (3, 10), (6, 6)])
def test_min_p_value_is_what_scipy_gives_for_fully_separated_rounds(n: int, m: int) -> None:
    from scipy.stats import mannwhitneyu

    p = mannwhitneyu(list(range(n)), list(range(100, 100 + m)), alternative="two-sided", method="exact").pvalue
    assert min_p_value(n, m) == pytest.approx(p)
    assert can_reach(n, m, 0.01) == (p < 0.01)


def test_different_thread_counts_are_not_compared() -> None:
    table = _compare(_run("aaaa", 0.010, 0.008, seed=1, threads=1),
                     _run("bbbb", 0.010, 0.008, seed=3, when="x", threads=2))
    assert table.loc["b.py::ours", "verdict"] == "not comparable (threads 1 vs 2)"


def _history(factors_ours: list[float], factors_peer: list[float]) -> pd.DataFrame:
    runs = [_run(f"{i:04d}", 0.010 * fo, 0.008 * fp, seed=10 * i, when=f"2026-01-{i + 1:02d}")
            for i, (fo, fp) in enumerate(zip(factors_ours, factors_peer, strict=True))]
    return history_changes(runs_frame(runs, log=[]))


def test_history_a_busier_box_is_no_change_point_lmfs_slowing_is() -> None:
    busy = [1.0, 1.0, 1.0, 1.4, 1.4, 1.4]
    assert _history(busy, busy).empty  # lmfs and peer both 1.4x from run 3 on: the machine, not the code
    changes = _history([1.0, 1.0, 1.0, 1.2, 1.2, 1.2], [1.0] * 6)
    assert changes[["benchmark", "commit", "kind"]].values.tolist() == [["b.py::ours", "0003", "regression"]]
    assert changes["basis"].iloc[0] == "peer: torch"


def test_run_load_tolerates_absence_and_marks_load() -> None:
    assert run_load({"benchmarks": []}) is None
    assert run_load({"load": "high"}) is None
    assert run_load({"load": {"start": None, "end": None, "cpus": 2}}) is None
    assert format_load(None) == "load not recorded"
    busy = run_load({"load": BUSY})
    assert busy is not None and busy["loaded"] and busy["peak"] == 5.3
    assert "UNDER LOAD" in format_load(busy)
    quiet = run_load({"load": QUIET})
    assert quiet is not None and not quiet["loaded"]
    cpus_from_machine = run_load({"load": {"start": [3.0, 1, 1], "end": None}, "machine_info": {"cpu_count": 4}})
    assert cpus_from_machine is not None and cpus_from_machine["cpus"] == 4 and not cpus_from_machine["loaded"]
    df = runs_frame([_run("aaaa", 0.01, 0.008, load=BUSY), _run("bbbb", 0.01, 0.008, when="x")], log=[])
    assert df.groupby("commit")["loaded"].first().to_dict() == {"aaaa": True, "bbbb": False}
    assert math.isnan(df[df.commit == "bbbb"]["load_peak"].iloc[0])


def _many(commit: str, rel: list[float], *, seed: int, when: str) -> Run:
    """One run with a benchmark group per entry of ``rel``: lmfs at ``rel[i]`` × its peer's time."""
    entries = []
    for i, r in enumerate(rel):
        entries.append(bench_entry(f"b.py::ours{i}", rounds(0.01 * r, seed=seed + 2 * i), group=f"g{i}"))
        entries.append(bench_entry(f"b.py::peer{i}", rounds(0.01, seed=seed + 2 * i + 1), group=f"g{i}",
                                   impl="torch"))
    return Run("cpu-test-2c", commit, None, bench_doc(entries, when=when))  # type: ignore[arg-type]


def test_load_changing_during_a_run_is_within_the_spread_of_all_ratios() -> None:
    """lmfs and its peer measured at differently busy moments: the ratios scatter by ~x1.4 (lognormal sigma
    0.35) across benchmarks; none of them, not even a 1.5x one, is a regression of lmfs."""
    import numpy as np

    rng = np.random.default_rng(5)
    scatter = list(np.exp(rng.normal(0.0, 0.35, 10)))
    scatter[0] = 1.5
    table = _compare(_many("aaaa", [1.0] * 10, seed=1, when="1"), _many("bbbb", scatter, seed=50, when="2"))
    assert table.attrs["spread"] > 0.2
    assert not table["verdict"].isin(["REGRESSION", "improvement"]).any()
    assert table.loc["b.py::ours0", "verdict"] == "within spread"


def test_on_a_quiet_box_the_spread_does_not_hide_a_1_2x_regression() -> None:
    table = _compare(_many("aaaa", [1.0] * 10, seed=1, when="1"),
                     _many("bbbb", [1.2] + [1.0] * 9, seed=50, when="2"))
    assert table.attrs["spread"] < 0.05
    assert table.loc["b.py::ours0", "verdict"] == "REGRESSION"
    assert (table.drop(index="b.py::ours0")["verdict"].isin(["same", "peer"])).all()
