"""An independent reference for the kernel specs: attention with materialised scores, in float64, with autograd.

Written for the specs only (it imports nothing from lmfs). ``reference_attention`` returns the output and the
row logsumexp ``L`` of the scaled, masked scores; gradients come from autograd on the float64 graph.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def reference_attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> tuple[Tensor, Tensor]:
    """``q (..., n_q, d)``, ``k, v (..., n_k, d)`` → ``(O (..., n_q, d), L (..., n_q))``, both float64.

    Causal: query ``i`` attends to keys ``j ≤ i`` (as ``F.scaled_dot_product_attention(is_causal=True)``).
    """
    q64, k64, v64 = q.double(), k.double(), v.double()
    scores = torch.einsum("...qd,...kd->...qk", q64, k64) / math.sqrt(q.shape[-1])
    if is_causal:
        i = torch.arange(q.shape[-2], device=q.device)[:, None]
        j = torch.arange(k.shape[-2], device=q.device)[None, :]
        scores = scores.masked_fill(j > i, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None])
    return torch.einsum("...qk,...kd->...qd", probs, v64), lse


def reference_grads(
    q: Tensor, k: Tensor, v: Tensor, grad_out: Tensor, is_causal: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """dQ, dK, dV (float64) of ``sum(O ∘ grad_out)`` for the reference attention."""
    leaves = [x.detach().double().requires_grad_(True) for x in (q, k, v)]
    out, _ = reference_attention(*leaves, is_causal=is_causal)
    out.backward(grad_out.double())
    return tuple(x.grad for x in leaves)  # type: ignore[return-value]


def saved_logsumexp(out: Tensor, batch_shape: tuple[int, ...]) -> Tensor:
    """The one saved tensor of shape ``batch_shape`` (``(batch, n_queries)``) in ``out``'s autograd node."""
    saved = [t for t in out.grad_fn.saved_tensors if tuple(t.shape) == tuple(batch_shape)]
    assert len(saved) == 1, f"expected exactly one saved tensor of shape {batch_shape}, found {len(saved)}"
    return saved[0]
