"""The training-API simulator: a hard FLOPs budget, free repeats, the API's ranges."""

from __future__ import annotations

import pytest

CFG = dict(d_model=256, num_layers=4, num_heads=4, batch_size=128, learning_rate=3e-4)


@pytest.mark.points(2)
def test_budget_is_enforced(adapter):
    sim = adapter.get_scaling_api_simulator(total_flops_budget=1.3e16, seed=0)
    assert sim.query(**CFG, train_flops=1e16) > 0
    assert sim.spent == pytest.approx(1e16)
    with pytest.raises(ValueError):  # 1e16 + 6e15 > 1.3e16
        sim.query(**{**CFG, "d_model": 128}, train_flops=6e15)
    assert sim.spent == pytest.approx(1e16), "a refused query must spend nothing"
    sim.query(**{**CFG, "d_model": 128}, train_flops=3e15)  # still fits
    assert sim.spent == pytest.approx(1.3e16)


@pytest.mark.points(1)
def test_repeats_are_free_and_identical(adapter):
    sim = adapter.get_scaling_api_simulator(total_flops_budget=1e16, seed=1)
    first = sim.query(**CFG, train_flops=1e16)
    again = sim.query(**CFG, train_flops=1e16)  # the budget is spent; a repeat still answers
    assert again == first
    assert sim.spent == pytest.approx(1e16)


@pytest.mark.points(1)
@pytest.mark.parametrize(
    "bad",
    [
        dict(d_model=2048),
        dict(num_layers=40),
        dict(learning_rate=1e-1),
        dict(batch_size=100),
        dict(train_flops=2e13),
    ],
)
def test_out_of_range_queries_raise(adapter, bad):
    sim = adapter.get_scaling_api_simulator(total_flops_budget=2e18, seed=0)
    with pytest.raises(ValueError):
        sim.query(**{**CFG, "train_flops": 1e15, **bad})
    assert sim.spent == 0
