"""lmfs.kernels internals the specs don't reach: the (B, H, T, D) entry point, strided inputs, tile sizes, errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lmfs.kernels.attention import flash_attention, naive_attention
from lmfs.kernels.attention_backends import make_attention
from lmfs.kernels.flash_pytorch import flash_backward, flash_forward

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _heads_qkv(seed: int, b: int = 2, t: int = 29, h: int = 3, d: int = 16, device: str = "cpu"):
    """Q, K, V of shape (b, h, t, d) as the transposed views a model produces (non-contiguous)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, h, 3 * d, generator=gen).to(device)
    return [y.transpose(1, 2).requires_grad_(True) for y in x.split(d, dim=-1)]


def _sdpa_like(q, k, v, causal):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


@pytest.mark.parametrize("causal", [False, True])
def test_naive_attention_matches_sdpa(causal):
    q, k, v = _heads_qkv(0)
    torch.testing.assert_close(naive_attention(q, k, v, causal), _sdpa_like(q, k, v, causal), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tiles", [(16, 16), (16, 48), (64, 16)])
@pytest.mark.parametrize("causal", [False, True])
def test_pytorch_tiles_of_any_size_agree(tiles, causal):
    q, k, v = (x.detach() for x in _heads_qkv(1, t=70))
    out, lse = flash_forward(q, k, v, causal, *tiles)
    ref = _sdpa_like(q, k, v, causal)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    grads = flash_backward(q, k, v, out, lse, g, causal, *tiles)
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v)]
    _sdpa_like(*leaves, causal).backward(g)
    for mine, leaf in zip(grads, leaves, strict=True):
        torch.testing.assert_close(mine, leaf.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "backend", ["pytorch", "naive", pytest.param("triton", marks=[pytest.mark.triton, needs_triton])]
)
def test_attention_fn_on_strided_heads_layout(backend):
    device = DEVICE if backend == "triton" else "cpu"
    q, k, v = _heads_qkv(2, device=device)
    fn = make_attention(backend)
    out = fn(q, k, v, is_causal=True)
    assert out.shape == q.shape
    out.sum().backward()
    grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    _sdpa_like(q, k, v, True).sum().backward()
    tol = 2e-2 if device == "cuda" else 1e-4
    torch.testing.assert_close(out, _sdpa_like(q, k, v, True), rtol=tol, atol=tol)
    for mine, x in zip(grads, (q, k, v), strict=True):
        torch.testing.assert_close(mine, x.grad, rtol=tol, atol=tol)


def test_unknown_kernel_is_a_clear_error():
    q = torch.randn(1, 4, 16)
    with pytest.raises(ValueError, match="unknown FlashAttention kernel 'nope'; choose one of triton, pytorch"):
        flash_attention(q, q, q, kernel="nope")


def test_pytorch_rejects_mismatched_shapes():
    from lmfs.kernels.flash_pytorch import FlashAttentionPyTorch

    with pytest.raises(ValueError, match="incompatible shapes"):
        FlashAttentionPyTorch.apply(torch.randn(2, 8, 16), torch.randn(2, 8, 32), torch.randn(2, 8, 32), False)


@needs_triton
@pytest.mark.triton
def test_triton_errors_name_the_problem(monkeypatch):
    from lmfs.kernels import flash_triton

    small = torch.randn(1, 8, 8, device=DEVICE)
    with pytest.raises(ValueError, match="head dim 8 unsupported"):
        flash_triton.triton_forward(small, small, small)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        x = torch.randn(1, 8, 16)
        with pytest.raises(RuntimeError, match="need CUDA tensors"):
            flash_triton.triton_forward(x, x, x)


@needs_triton
@pytest.mark.triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter tile sizes only apply on the CPU")
@pytest.mark.parametrize("tiles", [(32, 16), (16, 32)])
@pytest.mark.parametrize("causal", [False, True])
def test_triton_unequal_tiles_on_the_interpreter(monkeypatch, tiles, causal):
    """The causal band / ragged-tail logic must hold when BLOCK_Q != BLOCK_K (as in the GPU configs)."""
    from lmfs.kernels import flash_triton

    monkeypatch.setattr(flash_triton, "INTERPRETER_TILES", tiles)
    q, k, v = (x.detach().clone().requires_grad_(True) for x in _heads_qkv(5, b=1, t=75, h=2, d=16))
    out = flash_triton.FlashAttentionTriton.apply(q, k, v, causal)
    g = torch.randn_like(out)
    out.backward(g)
    grads = [x.grad.clone() for x in (q, k, v)]
    leaves = [x.detach().clone().requires_grad_(True) for x in (q, k, v)]
    ref = _sdpa_like(*leaves, causal)
    ref.backward(g)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    for mine, leaf in zip(grads, leaves, strict=True):
        torch.testing.assert_close(mine, leaf.grad, rtol=1e-4, atol=1e-4)


def test_attention_fn_follows_autocast_and_mixed_dtypes():
    q, k, v = (x.detach() for x in _heads_qkv(3))
    fn = make_attention("pytorch")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fn(q, k, v, is_causal=True).dtype == torch.bfloat16
    out = fn(q, k, v.to(torch.bfloat16), is_causal=True)  # mixed: promoted to float32
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, _sdpa_like(q, k, v.to(torch.bfloat16).float(), True), rtol=1e-5, atol=1e-5)
