"""FlashAttention-2 in plain PyTorch (``get_flashattention_autograd_function_pytorch``) against the reference."""

from __future__ import annotations

import pytest
import torch

from specs.kernels.checks import check_backward, check_forward, random_qkv

TOL = 2e-3
# (batch, n_queries, n_keys, d): tile multiples, ragged tails, a single short row block, unequal lengths
SHAPES = [(2, 64, 64, 32), (3, 37, 37, 16), (1, 100, 100, 64), (2, 5, 5, 16), (2, 48, 80, 16)]


def _fn(adapter):
    return adapter.get_flashattention_autograd_function_pytorch()


@pytest.mark.points(2)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_reference(adapter, shape, is_causal):
    if is_causal and shape[1] != shape[2]:
        pytest.skip("causal attention is specified for n_queries == n_keys")
    check_forward(_fn(adapter), shape, is_causal, TOL)


@pytest.mark.points(2)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_backward_matches_reference(adapter, shape, is_causal):
    if is_causal and shape[1] != shape[2]:
        pytest.skip("causal attention is specified for n_queries == n_keys")
    check_backward(_fn(adapter), shape, is_causal, TOL)


@pytest.mark.points(2)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_saves_only_qkvo_and_logsumexp(adapter, is_causal):
    q, k, v = random_qkv(2, 40, 40, 16)
    out = _fn(adapter).apply(q, k, v, is_causal)
    saved = list(out.grad_fn.saved_tensors)
    assert len(saved) == 5, f"expected Q, K, V, O and L to be saved, got {len(saved)} tensors"
    for name, x in (("Q", q), ("K", k), ("V", v), ("O", out)):
        matches = [t for t in saved if t.shape == x.shape and torch.equal(t, x.detach())]
        assert matches, f"{name} is not among the saved tensors"
    lse = [t for t in saved if tuple(t.shape) == (2, 40)]
    assert len(lse) == 1, "exactly one saved tensor must have shape (batch, n_queries)"


@pytest.mark.points(1)
def test_half_precision_inputs_keep_their_dtype(adapter):
    q, k, v = random_qkv(2, 33, 33, 32, dtype=torch.bfloat16)
    out = _fn(adapter).apply(q, k, v, True)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()
