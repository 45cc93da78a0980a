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


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Numerically stable softmax along ``dim`` (the max is subtracted first). Shape preserved.

    Rows that are entirely ``-inf`` give NaN, as the math says (there is nothing to normalize).
    """
    # the shift is a constant for the gradient (softmax is shift-invariant): detach it so that autograd
    # does not route a (zero) gradient through amax, which costs a full pass over x
    shifted = x - x.amax(dim=dim, keepdim=True).detach()
    exp = shifted.exp_()  # in place on a fresh tensor: subtraction's backward does not need its output
    total = exp.sum(dim=dim, keepdim=True)
    if exp.requires_grad:
        return exp / total  # exp is saved for the backward of exp_: no more in-place ops on it
    return exp.div_(total)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Stable ``log softmax`` along ``dim``: ``x - logsumexp(x)``. Shape preserved."""
    shifted = x - x.amax(dim=dim, keepdim=True).detach()
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def scaled_dot_product_attention(Q: Tensor, K: Tensor, V: Tensor, mask: Tensor | None = None) -> Tensor:
    """``softmax(Q Kᵀ / √d_k) V`` with an optional boolean mask.

    Q: (..., q, d_k); K: (..., k, d_k); V: (..., k, d_v); mask: bool broadcastable to (..., q, k),
    True where a query may attend to a key. Returns (..., q, d_v).
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"attention mask must be a bool tensor (True = attend), got dtype {mask.dtype}")
    d_k = Q.shape[-1]
    scores = torch.matmul(Q * (1.0 / math.sqrt(d_k)), K.transpose(-2, -1))  # scale the smaller operand
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))  # scores is fresh and matmul's backward does not need it
    return torch.matmul(softmax(scores, dim=-1), V)


def causal_mask(
    n_queries: int, n_keys: int | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Boolean lower-triangular mask (n_queries, n_keys): query i attends keys ``j ≤ i + (n_keys - n_queries)``.

    With ``n_keys > n_queries`` (queries are the last positions of the sequence) the diagonal is shifted.
    """
    n_keys = n_queries if n_keys is None else n_keys
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(diagonal=n_keys - n_queries)


def causal_attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = True) -> Tensor:
    """Default attention kernel of :class:`~lmfs.nn.MultiHeadSelfAttention`.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D) -> (B, H, Tq, D). The signature ``(q, k, v, is_causal)`` is the
    seam through which a FlashAttention kernel can replace it.
    """
    mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device) if is_causal else None
    return scaled_dot_product_attention(q, k, v, mask)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    logits: (..., V) unnormalized scores (any number of leading dims, e.g. (batch, seq, vocab));
    targets: (...) integer class ids. Returns a scalar (computed in float32; stable for huge logits).
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"cross_entropy: logits {tuple(logits.shape)} must be targets' shape {tuple(targets.shape)} + (vocab,)"
        )
    x = logits.float()
    m = x.amax(dim=-1, keepdim=True).detach()
    lse = (m + torch.log(torch.exp(x - m).sum(dim=-1, keepdim=True))).squeeze(-1)
    target_logit = x.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return (lse - target_logit).mean()
