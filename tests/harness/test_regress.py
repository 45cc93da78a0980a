"""Regression detection on synthetic histories: compare (ratio AND rank test) and change points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmfs.harness.history import UnknownMachine, commit_positions, history_table, runs_frame
from lmfs.harness.regress import change_points, compare_commits, compare_frames, history_changes, verdict
from lmfs.harness.store import Run
from tests.harness.synthetic import bench_doc, bench_entry, rounds


def _series(n: int, seed: int, noise: float, step_at: int | None = None, factor: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(0.0, noise, n)) * 0.01
    if step_at is not None:
        x[step_at:] *= factor
    return x


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(8, 40), data=st.data())
def test_known_step_is_found_where_it_is(seed: int, n: int, data: st.DataObject) -> None:
    at = data.draw(st.integers(2, n - 2))
    factor = data.draw(st.sampled_from([1.3, 1.5, 2.0, 0.6]))
    assert change_points(_series(n, seed, 0.02, at, factor)) == [at]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(2, 60))
def test_no_change_history_is_never_flagged(seed: int, n: int) -> None:
    assert change_points(_series(n, seed, 0.03)) == []


def test_two_steps_found() -> None:
    x = _series(30, 3, 0.02)
    x[10:] *= 1.5
    x[20:] /= 1.5
    assert change_points(x) == [10, 20]


def test_verdict_needs_both_ratio_and_rank_test() -> None:
    assert verdict(1.5, 1e-4, 0.1, 0.01) == "REGRESSION"
    assert verdict(1.5, 0.2, 0.1, 0.01) == "same"  # big ratio, not significant
    assert verdict(1.05, 1e-6, 0.1, 0.01) == "same"  # significant, below threshold
    assert verdict(0.5, 1e-4, 0.1, 0.01) == "improvement"
    assert verdict(1.5, None, 0.1, 0.01) == "inconclusive"


def _frame(entries_by_commit: dict[str, list], machine: str = "cpu-test-2c") -> pd.DataFrame:
    runs = [Run(machine, c, None, bench_doc(e, machine_id=machine, when=f"2026-01-0{i + 1}T00:00:00"))  # type: ignore[arg-type]
            for i, (c, e) in enumerate(entries_by_commit.items())]
    return runs_frame(runs, log=[])


def test_compare_flags_a_real_regression_only() -> None:
    df = _frame({
        "aaaa": [bench_entry("t::slow", rounds(0.010, seed=1)), bench_entry("t::same", rounds(0.010, seed=2)),
                 bench_entry("t::noisy", [0.01, 0.03, 0.01])],
        "bbbb": [bench_entry("t::slow", rounds(0.015, seed=3)), bench_entry("t::same", rounds(0.0101, seed=4)),
                 bench_entry("t::noisy", [0.012, 0.04, 0.011])],
    })
    _, _, table = compare_commits(df, "aaaa", "bbbb", "cpu-test-2c")
    by = table.set_index("benchmark")
    assert by.loc["t::slow", "verdict"] == "REGRESSION" and by.loc["t::slow", "ratio"] == pytest.approx(1.5, rel=0.1)
    assert by.loc["t::same", "verdict"] == "same"
    # ratio 1.2 on 3 vs 3 rounds: Mann-Whitney cannot go below p = 0.1 there, so neither "same" nor a flag
    assert by.loc["t::noisy", "verdict"] == "inconclusive"
    with pytest.raises(UnknownMachine, match=r"cuda-h100.*cpu-test-2c"):
        compare_commits(df, "aaaa", "bbbb", "cuda-h100")
    with pytest.raises(KeyError, match="not in the store"):
        compare_commits(df, "aaaa", "cccc", "cpu-test-2c")


def test_compare_never_mixes_machines() -> None:
    cpu = _frame({"aaaa": [bench_entry("t::x", rounds(0.01))]}, "cpu-test-2c")
    gpu = _frame({"bbbb": [bench_entry("t::x", rounds(0.001))]}, "cuda-h100")
    df = pd.concat([cpu, gpu])
    with pytest.raises(KeyError, match="bbbb"):
        compare_commits(df, "aaaa", "bbbb", "cpu-test-2c")


def test_history_order_follows_git_log_then_datetime() -> None:
    log = ["1" * 40, "2" * 40, "3" * 40]
    mk = lambda c, when: Run("m", c, None, bench_doc([bench_entry("t::x", [1.0])], when=when))  # type: ignore[arg-type]
    runs = [mk("3" * 12, "2026-01-01"), mk("1" * 12, "2026-01-05"), mk("2" * 12 + "-dirty", "2026-01-02"),
            mk("2" * 12, "2026-01-03"), mk("f" * 12, "2026-01-09")]
    order = commit_positions(runs, log)
    assert sorted(order, key=order.get) == ["1" * 12, "2" * 12, "2" * 12 + "-dirty", "3" * 12, "f" * 12]


def test_history_table_and_changes() -> None:
    meds = [0.010, 0.0101, 0.0099, 0.0100, 0.020, 0.0201, 0.0199]
    df = _frame({f"{i:04d}": [bench_entry("t::x", rounds(m, seed=i))] for i, m in enumerate(meds)})
    table = history_table(df, "cpu-test-2c")
    assert list(table.columns) == [f"{i:04d}" for i in range(7)]
    changes = history_changes(df)
    assert changes[["commit", "previous", "kind"]].values.tolist() == [["0004", "0003", "regression"]]
    assert changes["p_value"].iloc[0] < 0.01
    assert changes["ratio"].iloc[0] == pytest.approx(2.0, rel=0.1)
    with pytest.raises(UnknownMachine):
        history_table(df, "nope")


def test_compare_frames_handles_missing_benchmarks() -> None:
    df = _frame({"aaaa": [bench_entry("t::x", rounds(0.01))], "bbbb": [bench_entry("t::y", rounds(0.01))]})
    assert compare_frames(df[df.commit == "aaaa"], df[df.commit == "bbbb"]).empty


def test_change_point_from_one_noisy_run_is_not_confirmed_by_the_rounds() -> None:
    """A busy box: the first run's rounds jump between two levels (median high), the next runs are tight."""
    noisy = [9.5, 5.2, 9.3, 9.1, 5.1, 9.0, 9.0, 4.9, 8.9, 4.9]
    df = _frame({
        "0000": [bench_entry("t::x", [v * 1e-3 for v in noisy])],
        "0001": [bench_entry("t::x", rounds(0.0054, n=10, noise=0.03, seed=1))],
        "0002": [bench_entry("t::x", rounds(0.0055, n=10, noise=0.03, seed=2))],
    })
    assert change_points(df["median"].to_numpy()) == [1]  # the medians alone would flag it
    assert history_changes(df).empty
