"""From-scratch functional ops: activations, softmax, attention and the cross-entropy loss.

Only tensor operations are used here (no ``torch.nn.functional``), so each op is readable as math.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def silu(x: Tensor) -> Tensor:
    """SiLU / swish: ``x · σ(x)``. Shape preserved."""
    return x * torch.sigmoid(x)


class _Softmax(torch.autograd.Function):
    """softmax with a hand-written backward: ``dx = y ⊙ (g − Σ g ⊙ y)``; saves only the output y."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int) -> Tensor:  # type: ignore[override]
        y = (x - x.amax(dim=dim, keepdim=True)).exp_()
        y.div_(y.sum(dim=dim, keepdim=True))
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        gy = grad * y
        return gy.addcmul_(y, gy.sum(dim=ctx.dim, keepdim=True), value=-1.0), None


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim`` (the max is subtracted first). Shape preserved.

    Rows that are entirely ``-inf`` give NaN, as the math says (there is nothing to normalize). The backward is
    written out (one saved tensor, three passes) instead of being traced through exp/sum/div.
    """
    return _Softmax.apply(x, dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Stable ``log softmax`` along ``dim``: ``x - logsumexp(x)``. Shape preserved."""
    shifted = x - x.amax(dim=dim, keepdim=True).detach()
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def scaled_dot_product_attention(
    Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None, *, scale: float | None = None
) -> Tensor:
    """``softmax(Q Kᵀ · scale) V`` with an optional boolean mask; ``scale`` defaults to ``1/√d_k``.

    Q: (..., q, d_k); K: (..., k, d_k); V: (..., k, d_v); mask: bool broadcastable to (..., q, k),
    True where a query may attend to a key. Returns (..., q, d_v).
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"attention mask must be a bool tensor (True = attend), got dtype {mask.dtype}")
    if scale is None:
        scale = 1.0 / math.sqrt(Q.shape[-1])
    scores = torch.matmul(Q * scale, K.transpose(-2, -1))  # scale the smaller operand
    if mask is not None:
        if torch.broadcast_shapes(scores.shape, mask.shape) == scores.shape:
            scores.masked_fill_(~mask, float("-inf"))  # scores is fresh; matmul's backward does not need it
        else:  # a mask with more leading dims than Q/K widens the result
            scores = scores.masked_fill(~mask, float("-inf"))
    return torch.matmul(softmax(scores, dim=-1), V)


def causal_mask(
    n_queries: int, n_keys: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Boolean lower-triangular mask (n_queries, n_keys): query i attends keys ``j ≤ i + (n_keys - n_queries)``.

    With ``n_keys > n_queries`` (queries are the last positions of the sequence) the diagonal is shifted.
    """
    n_keys = n_queries if n_keys is None else n_keys
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(diagonal=n_keys - n_queries)


def causal_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    is_causal: bool = True,
    *,
    mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Default attention kernel of :class:`~lmfs.nn.MultiHeadSelfAttention` (the ``"default"`` backend).

    q: (B, H, Tq, D); k, v: (B, Hkv, Tk, D) with ``H`` a multiple of ``Hkv`` -> (B, H, Tq, D). Grouped K/V heads
    (GQA) are broadcast onto their ``H / Hkv`` query heads, not copied. ``is_causal``: query i attends keys
    ``j ≤ i + (Tk − Tq)`` (aligned to the end, as :func:`causal_mask`); ``mask``: bool broadcastable to
    (B, H, Tq, Tk), True = attend; given both, a key must pass both. ``scale`` defaults to ``1/√D``.
    The signature is the model's attention seam (:class:`lmfs.nn.attention.AttentionFn`).
    """
    if is_causal:
        causal = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
        mask = causal if mask is None else mask & causal
    heads, kv_heads = (q.shape[-3], k.shape[-3]) if min(q.dim(), k.dim()) >= 3 else (1, 1)
    if kv_heads >= heads:  # one K/V head per query head (or plain broadcasting)
        return scaled_dot_product_attention(q, k, v, mask, scale=scale)
    if heads % kv_heads:
        raise ValueError(
            f"causal_attention: {heads} query heads cannot share {kv_heads} key/value heads "
            f"(q {tuple(q.shape)}, k {tuple(k.shape)})"
        )
    group = heads // kv_heads
    # the query heads of one K/V head side by side: (..., Hkv, group, Tq, D) against (..., Hkv, 1, Tk, D)
    if mask is not None and mask.dim() >= 3:
        mask = mask.unflatten(-3, (kv_heads, group)) if mask.shape[-3] == heads else mask.unsqueeze(-3)
    out = scaled_dot_product_attention(
        q.unflatten(-3, (kv_heads, group)), k.unsqueeze(-3), v.unsqueeze(-3), mask, scale=scale
    )
    return out.flatten(-4, -3)


causal_attention.supports_gqa = True  # type: ignore[attr-defined]  # see lmfs.nn.attention.accepts_grouped_kv


class _CrossEntropy(torch.autograd.Function):
    """Mean NLL with a hand-written backward ``(softmax(x) − onehot(t)) / N``; saves the logits' row logsumexp
    (N floats) besides the logits themselves, never a float32 copy of them."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:  # type: ignore[override]
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32, fp64 stays
        m = x.amax(dim=-1, keepdim=True)
        lse = (x - m).exp_().sum(dim=-1, keepdim=True).log_().add_(m)  # (N, 1)
        target_logit = x.gather(-1, targets.unsqueeze(-1))
        ctx.save_for_backward(logits, targets, lse)
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        logits, targets, lse = ctx.saved_tensors
        probs = (logits.to(lse.dtype) - lse).exp_()
        probs.scatter_add_(-1, targets.unsqueeze(-1), torch.full_like(lse, -1.0))
        probs.mul_(grad / logits.shape[0])
        return probs.to(logits.dtype), None


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    logits: (..., V) unnormalized scores (any number of leading dims, e.g. (batch, seq, vocab));
    targets: (...) integer class ids. Returns a scalar (float32, or float64 for float64 logits), stable for
    huge logits (max-shifted logsumexp). The gradient is written out: ``(softmax − onehot) / N``.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"cross_entropy: logits {tuple(logits.shape)} must be targets' shape {tuple(targets.shape)} + (vocab,)"
        )
    return _CrossEntropy.apply(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long())
