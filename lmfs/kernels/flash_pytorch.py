"""FlashAttention-2 in plain PyTorch: tiled forward with an online softmax, backward from the FA2 equations.

Shapes: ``Q (..., n_q, d)``, ``K, V (..., n_k, d)``, output ``O (..., n_q, d)``, row logsumexp ``L (..., n_q)``.
The forward never builds the ``n_q × n_k`` score matrix: it walks key tiles and keeps, per query row, the running
max ``m``, the running denominator ``ℓ`` and an unnormalised accumulator. Only Q, K, V, O and L are saved; the
backward recomputes ``P = exp(S − L)`` tile by tile and uses ``D = rowsum(dO ∘ O)``.

Causal masking follows ``F.scaled_dot_product_attention(is_causal=True)``: query ``i`` sees keys ``j ≤ i``.
Arithmetic is in float32 whatever the input dtype; O and the gradients come back in the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DEFAULT_TILE_Q = 32
DEFAULT_TILE_K = 32
MIN_TILE = 16


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, where: str) -> None:
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError(f"{where}: Q, K, V need shape (..., seq, d); got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1] or k.shape[:-1] != v.shape[:-1] or q.shape[:-2] != k.shape[:-2]:
        raise ValueError(
            f"{where}: incompatible shapes Q {tuple(q.shape)}, K {tuple(k.shape)}, V {tuple(v.shape)}; "
            "expected Q (..., n_q, d), K (..., n_k, d), V (..., n_k, d_v) with the same leading dims"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{where}: Q, K, V must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")


def _causal_mask(q_start: int, n_rows: int, k_start: int, n_cols: int, device: torch.device) -> Tensor:
    """``(n_rows, n_cols)`` bool, True where key position > query position (to be masked out)."""
    rows = torch.arange(q_start, q_start + n_rows, device=device)[:, None]
    cols = torch.arange(k_start, k_start + n_cols, device=device)[None, :]
    return cols > rows


def flash_forward(
    q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False, tile_q: int = DEFAULT_TILE_Q, tile_k: int = DEFAULT_TILE_K
) -> tuple[Tensor, Tensor]:
    """Tiled forward. Returns ``O (..., n_q, d_v)`` in the input dtype and ``L (..., n_q)`` in float32."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
    for qs in range(0, n_q, tile_q):
        qi = q[..., qs : qs + tile_q, :].float() * scale
        rows = qi.shape[-2]
        m = torch.full(qi.shape[:-1], -math.inf, dtype=torch.float32, device=q.device)
        denom = torch.zeros_like(m)
        acc = torch.zeros(*qi.shape[:-1], v.shape[-1], dtype=torch.float32, device=q.device)
        k_end = min(n_k, qs + rows) if is_causal else n_k  # key tiles past the diagonal are skipped
        for ks in range(0, k_end, tile_k):
            kj = k[..., ks : ks + tile_k, :].float()
            vj = v[..., ks : ks + tile_k, :].float()
            s = qi @ kj.transpose(-1, -2)  # (..., rows, cols)
            if is_causal and ks + kj.shape[-2] - 1 > qs:  # the tile crosses the diagonal
                s = s.masked_fill(_causal_mask(qs, rows, ks, kj.shape[-2], q.device), -math.inf)
            m_new = torch.maximum(m, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])
            correction = torch.exp(m - m_new)
            denom = correction * denom + p.sum(dim=-1)
            acc = correction[..., None] * acc + p @ vj
            m = m_new
        out[..., qs : qs + rows, :] = (acc / denom[..., None]).to(q.dtype)
        lse[..., qs : qs + rows] = m + torch.log(denom)
    return out, lse


def flash_backward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    grad_out: Tensor,
    is_causal: bool = False,
    tile_q: int = DEFAULT_TILE_Q,
    tile_k: int = DEFAULT_TILE_K,
) -> tuple[Tensor, Tensor, Tensor]:
    """FA2 backward: key tiles outer (dK, dV accumulate locally), query tiles inner (dQ accumulates)."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    d_rows = (grad_out.float() * out.float()).sum(dim=-1)  # D = rowsum(dO ∘ O), (..., n_q)
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    for ks in range(0, n_k, tile_k):
        kj = k[..., ks : ks + tile_k, :].float()
        vj = v[..., ks : ks + tile_k, :].float()
        cols = kj.shape[-2]
        dkj = torch.zeros_like(kj)
        dvj = torch.zeros_like(vj)
        q_begin = (ks // tile_q) * tile_q if is_causal else 0  # query tiles wholly above the diagonal see nothing
        for qs in range(q_begin, n_q, tile_q):
            qi = q[..., qs : qs + tile_q, :].float()
            rows = qi.shape[-2]
            doi = grad_out[..., qs : qs + rows, :].float()
            s = (qi @ kj.transpose(-1, -2)) * scale
            if is_causal and ks + cols - 1 > qs:
                s = s.masked_fill(_causal_mask(qs, rows, ks, cols, q.device), -math.inf)
            p = torch.exp(s - lse[..., qs : qs + rows, None])  # recomputed probabilities
            dvj += p.transpose(-1, -2) @ doi
            dp = doi @ vj.transpose(-1, -2)
            ds = p * (dp - d_rows[..., qs : qs + rows, None])
            dq[..., qs : qs + rows, :] += (ds @ kj) * scale
            dkj += (ds.transpose(-1, -2) @ qi) * scale
        dk[..., ks : ks + cols, :] = dkj
        dv[..., ks : ks + cols, :] = dvj
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class FlashAttentionPyTorch(torch.autograd.Function):
    """``FlashAttentionPyTorch.apply(Q, K, V, is_causal=False) -> O`` on ``(..., seq, d)``.

    Saves exactly ``L, Q, K, V, O`` for the backward. Tile sizes are the class attributes ``tile_q`` and
    ``tile_k`` (at least 16).
    """

    tile_q: int = DEFAULT_TILE_Q
    tile_k: int = DEFAULT_TILE_K

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> Tensor:  # type: ignore[override]
        _check_inputs(q, k, v, "FlashAttentionPyTorch")
        cls = FlashAttentionPyTorch
        if cls.tile_q < MIN_TILE or cls.tile_k < MIN_TILE:
            raise ValueError(f"FlashAttentionPyTorch: tiles must be at least {MIN_TILE}×{MIN_TILE}")
        out, lse = flash_forward(q, k, v, bool(is_causal), cls.tile_q, cls.tile_k)
        ctx.save_for_backward(lse, q, k, v, out)
        ctx.is_causal = bool(is_causal)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:  # type: ignore[override]
        lse, q, k, v, out = ctx.saved_tensors
        cls = FlashAttentionPyTorch
        dq, dk, dv = flash_backward(q, k, v, out, lse, grad_out, ctx.is_causal, cls.tile_q, cls.tile_k)
        return dq, dk, dv, None
