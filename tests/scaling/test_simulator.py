"""Simulator persistence and determinism; the strategy against the known truth."""

from __future__ import annotations

import pytest

from lmfs.scaling.simulator import BudgetExceededError, TrainingAPISimulator
from lmfs.scaling.strategy import run_isoflop_strategy, shape_for

CFG = dict(d_model=256, num_layers=4, num_heads=4, batch_size=256, learning_rate=3e-4)


def test_same_seed_same_loss_and_roundtrip(tmp_path):
    a, b = TrainingAPISimulator(seed=3), TrainingAPISimulator(seed=3)
    assert a.query(**CFG, train_flops=1e15) == b.query(**CFG, train_flops=1e15)
    assert TrainingAPISimulator(seed=4).query(**CFG, train_flops=1e15) != a.query(**CFG, train_flops=1e15)
    a.save(tmp_path / "sim.json")
    c = TrainingAPISimulator.load(tmp_path / "sim.json")
    assert c.spent == a.spent and c.history == a.history
    assert c.query(**CFG, train_flops=1e15) == a.history[0]["loss"]  # a repeat after reload is still free
    assert c.spent == a.spent


def test_budget_error_says_what_to_do():
    sim = TrainingAPISimulator(total_budget=1e15)
    with pytest.raises(BudgetExceededError, match="re-query"):
        sim.query(**CFG, train_flops=3e15)


def test_noise_free_truth_is_minimised_at_lr_opt():
    sim = TrainingAPISimulator()
    t = sim.truth
    n, d = 1e7, 1e9
    best = t.mean_loss(n, d, t.lr_opt(n), 256)
    assert best < t.mean_loss(n, d, 2 * t.lr_opt(n), 256) and best < t.mean_loss(n, d, t.lr_opt(n), 128)


def test_shape_for_stays_in_range():
    sim = TrainingAPISimulator()
    for n in (1e4, 1e6, 1e8, 1e10):
        s = shape_for(n, sim=sim)
        assert (
            64 <= s["d_model"] <= 1024 and 2 <= s["num_layers"] <= 24 and s["d_model"] % s["num_heads"] == 0
        )


@pytest.mark.parametrize("seed", [0, 1])
def test_strategy_finds_the_optimum_within_budget(seed):
    sim = TrainingAPISimulator(seed=seed)
    res = run_isoflop_strategy(sim)
    assert res.spent <= sim.total_budget
    assert 0.8 < res.n_ratio < 1.25, res.summary()
    assert abs(res.loss_error) < 0.05, res.summary()
