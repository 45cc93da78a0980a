"""Checks shared by the PyTorch and Triton FlashAttention specs (each spec module picks the implementation)."""

from __future__ import annotations

import torch

from specs.kernels.reference import reference_attention, reference_grads, saved_logsumexp


def random_qkv(
    batch: int, n_q: int, n_k: int, d: int, dtype: torch.dtype = torch.float32, device: str = "cpu", seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, n, d, generator=gen) for n in (n_q, n_k, n_k))
    return tuple(x.to(device=device, dtype=dtype).requires_grad_(True) for x in (q, k, v))  # type: ignore[return-value]


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str) -> None:
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), rtol=tol, atol=tol, msg=lambda m: f"{what}: {m}")


def check_forward(fn_cls: type, shape: tuple[int, int, int, int], is_causal: bool, tol: float, device: str = "cpu",
                  dtype: torch.dtype = torch.float32) -> None:
    """O and the saved logsumexp L against the reference."""
    batch, n_q, n_k, d = shape
    q, k, v = random_qkv(batch, n_q, n_k, d, dtype, device, seed=sum(shape) + is_causal)
    out = fn_cls.apply(q, k, v, is_causal)
    assert out.shape == (batch, n_q, d) and out.dtype == dtype, f"output {tuple(out.shape)} {out.dtype}"
    ref_out, ref_lse = reference_attention(q.detach(), k.detach(), v.detach(), is_causal)
    close(out, ref_out, tol, "O")
    close(saved_logsumexp(out, (batch, n_q)), ref_lse, tol, "L (saved logsumexp)")


def check_backward(fn_cls: type, shape: tuple[int, int, int, int], is_causal: bool, tol: float, device: str = "cpu",
                   dtype: torch.dtype = torch.float32) -> None:
    """dQ, dK, dV of a random upstream gradient against the reference's autograd."""
    batch, n_q, n_k, d = shape
    q, k, v = random_qkv(batch, n_q, n_k, d, dtype, device, seed=7 * sum(shape) + is_causal)
    grad_out = torch.randn(batch, n_q, d, generator=torch.Generator().manual_seed(3)).to(device=device, dtype=dtype)
    out = fn_cls.apply(q, k, v, is_causal)
    out.backward(grad_out)
    ref = reference_grads(q, k, v, grad_out, is_causal)
    for name, x, r in zip(("dQ", "dK", "dV"), (q, k, v), ref, strict=True):
        assert x.grad is not None and x.grad.shape == x.shape, f"{name} missing or misshapen"
        close(x.grad, r, tol, name)
