"""Specs for global-norm gradient clipping, against torch.nn.utils.clip_grad_norm_."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st


def _params_with_grads(seed: int, scale: float, with_gradless: bool = True) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,), (2, 2, 2)]
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * scale
    if with_gradless:
        params.append(torch.nn.Parameter(torch.randn(4, generator=g)))  # no grad: skipped
    return params


@pytest.mark.points(3)
def test_clipping_matches_torch(adapter):
    @given(
        seed=st.integers(0, 10_000),
        scale=st.sampled_from([1e-3, 0.1, 1.0, 10.0, 1e3]),
        max_norm=st.sampled_from([0.01, 1.0, 5.0, 100.0]),
    )
    def check(seed, scale, max_norm):
        ours, theirs = _params_with_grads(seed, scale), _params_with_grads(seed, scale)
        adapter.run_gradient_clipping(ours, max_norm)
        torch.nn.utils.clip_grad_norm_(theirs, max_norm)
        for a, b in zip(ours, theirs, strict=True):
            if b.grad is None:
                assert a.grad is None
            else:
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)

    check()


@pytest.mark.points(1)
def test_clipping_uses_one_global_norm(adapter):
    """Two grads of norms 3 and 4 (global 5) clipped to 1: both scaled by 1/5, directions kept."""
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0]), torch.tensor([4.0])
    adapter.run_gradient_clipping([a, b], 1.0)
    torch.testing.assert_close(a.grad, torch.tensor([0.6]), rtol=1e-5, atol=0)
    torch.testing.assert_close(b.grad, torch.tensor([0.8]), rtol=1e-5, atol=0)


@pytest.mark.points(1)
def test_clipping_leaves_small_grads_alone(adapter):
    params = _params_with_grads(3, 1e-3)
    before = [p.grad.clone() for p in params if p.grad is not None]
    adapter.run_gradient_clipping(iter(params), 1.0)  # any iterable, e.g. model.parameters()
    for p, g in zip([p for p in params if p.grad is not None], before, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)
