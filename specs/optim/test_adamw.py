"""Specs for AdamW: against torch.optim.AdamW, against the handout algorithm, and its weight-decay property."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from specs.optim.reference import ReferenceAdamW


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w0 = [torch.randn(2, 3, generator=g), torch.randn(2, generator=g)]
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 2, generator=g)
    return w0, x, y


def _loss(params: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w, b = params
    return ((x @ w.T + b - y) ** 2).sum()


def _run(opt_cls, steps: int, seed: int = 0, **kw) -> list[torch.Tensor]:
    w0, x, y = _problem(seed)
    params = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = opt_cls(params, **kw)
    for _ in range(steps):
        opt.zero_grad()
        _loss(params, x, y).backward()
        opt.step()
    return [p.detach() for p in params]


HPARAMS = dict(lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8)


@pytest.mark.points(3)
def test_adamw_matches_torch_adamw_over_1000_steps(adapter):
    ours = _run(adapter.get_adamw_cls(), 1000, **HPARAMS)
    theirs = _run(torch.optim.AdamW, 1000, **HPARAMS)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)


@pytest.mark.points(2)
def test_adamw_is_a_torch_optimizer(adapter):
    cls = adapter.get_adamw_cls()
    assert issubclass(cls, torch.optim.Optimizer)
    p = torch.nn.Parameter(torch.ones(3))
    opt = cls([p], lr=0.1, weight_decay=0.0)
    assert opt.param_groups[0]["lr"] == 0.1


@pytest.mark.points(2)
def test_adamw_matches_handout_algorithm(adapter):
    @given(
        seed=st.integers(0, 1000),
        lr=st.sampled_from([1e-3, 1e-2, 0.1]),
        wd=st.sampled_from([0.0, 0.01, 0.1]),
        b1=st.sampled_from([0.9, 0.5]),
        b2=st.sampled_from([0.999, 0.95]),
    )
    def check(seed, lr, wd, b1, b2):
        w0, x, y = _problem(seed)
        params = [torch.nn.Parameter(w.clone()) for w in w0]
        opt = adapter.get_adamw_cls()(params, lr=lr, weight_decay=wd, betas=(b1, b2), eps=1e-8)
        reference = ReferenceAdamW(params, lr, (b1, b2), 1e-8, wd)
        for _ in range(20):
            opt.zero_grad()
            _loss(params, x, y).backward()
            reference.step([p.grad for p in params])
            opt.step()
        for a, b in zip(params, reference.params, strict=True):
            torch.testing.assert_close(a.detach().double(), b, rtol=1e-5, atol=1e-6)

    check()


@pytest.mark.points(2)
def test_adamw_zero_grads_decay_geometrically(adapter):
    """With g = 0 the Adam update is 0, so θ_t = θ_0 · (1 − lr·λ)^t exactly in the limit of float math."""

    @given(
        lr=st.sampled_from([1e-3, 1e-2, 0.1]), wd=st.sampled_from([0.01, 0.1, 0.5]), steps=st.integers(1, 50)
    )
    def check(lr, wd, steps):
        p = torch.nn.Parameter(torch.linspace(-2, 3, 7, dtype=torch.float64))
        start = p.detach().clone()
        opt = adapter.get_adamw_cls()([p], lr=lr, weight_decay=wd)
        for _ in range(steps):
            p.grad = torch.zeros_like(p)
            opt.step()
        torch.testing.assert_close(p.detach(), start * (1 - lr * wd) ** steps, rtol=1e-10, atol=1e-12)

    check()


@pytest.mark.points(1)
def test_adamw_respects_lr_changes_between_steps(adapter):
    """Schedules set param_groups[i]["lr"]; lr = 0 must freeze parameters (and decay)."""
    w0, x, y = _problem(1)
    params = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = adapter.get_adamw_cls()(params, lr=0.1, weight_decay=0.1)
    for group in opt.param_groups:
        group["lr"] = 0.0
    _loss(params, x, y).backward()
    opt.step()
    for p, w in zip(params, w0, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=0, atol=0)


@pytest.mark.points(1)
def test_adamw_state_dict_roundtrip_resumes_identically(adapter):
    cls = adapter.get_adamw_cls()
    w0, x, y = _problem(2)

    def train(params, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            _loss(params, x, y).backward()
            opt.step()

    a = [torch.nn.Parameter(w.clone()) for w in w0]
    opt_a = cls(a, **HPARAMS)
    train(a, opt_a, 10)
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_b = cls(b, **HPARAMS)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as a checkpoint file would
    train(a, opt_a, 5)
    train(b, opt_b, 5)
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
