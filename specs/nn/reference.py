"""Independent reference implementations for the nn specs.

Written for clarity, not speed: float64, einsum, explicit loops over heads and pairs, complex numbers for
RoPE. They share no code with any implementation under test.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def f64(t: Tensor) -> Tensor:
    return t.detach().to(torch.float64)


def linear(w: Tensor, x: Tensor) -> Tensor:
    """w (out, in), x (..., in) -> (..., out)."""
    return torch.einsum("oi,...i->...o", f64(w), f64(x))


def embedding(table: Tensor, ids: Tensor) -> Tensor:
    """A one-hot product, deliberately not an index lookup."""
    one_hot = (ids[..., None] == torch.arange(table.shape[0])).to(torch.float64)
    return torch.einsum("...v,vd->...d", one_hot, f64(table))


def silu(x: Tensor) -> Tensor:
    x = f64(x)
    return x / (1.0 + torch.exp(-x))


def rmsnorm(g: Tensor, x: Tensor, eps: float) -> Tensor:
    x = f64(x)
    rms = torch.sqrt((x * x).sum(-1, keepdim=True) / x.shape[-1] + eps)
    return x / rms * f64(g)


def swiglu(w1: Tensor, w2: Tensor, w3: Tensor, x: Tensor) -> Tensor:
    return linear(w2, silu(linear(w1, x)) * linear(w3, x))


def softmax(x: Tensor, dim: int) -> Tensor:
    x = f64(x)
    lse = torch.logsumexp(x, dim=dim, keepdim=True)
    return torch.exp(x - lse)


def rope(x: Tensor, positions: Tensor, theta: float) -> Tensor:
    """Rotate pairs (2k, 2k+1) as complex numbers z_k = x[2k] + i·x[2k+1] times e^{i·pos·θ^(-2k/d)}."""
    x = f64(x)
    d = x.shape[-1]
    z = torch.complex(x[..., 0::2], x[..., 1::2])
    k = torch.arange(d // 2, dtype=torch.float64)
    angle = positions.to(torch.float64)[..., None] * theta ** (-2.0 * k / d)
    z = z * torch.polar(torch.ones_like(angle), angle)
    out = torch.empty_like(x)
    out[..., 0::2], out[..., 1::2] = z.real, z.imag
    return out


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    scores = torch.einsum("...qd,...kd->...qk", f64(q), f64(k)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=torch.float64))
    return torch.einsum("...qk,...kd->...qd", softmax(scores, -1), f64(v))


def mha(
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    x: Tensor,
    num_heads: int,
    theta: float | None = None,
    positions: Tensor | None = None,
    num_kv_heads: int | None = None,
) -> Tensor:
    """Causal multi-head attention, one head at a time. x (..., T, d_model)."""
    num_kv_heads = num_kv_heads or num_heads
    T = x.shape[-2]
    d_head = wq.shape[0] // num_heads
    if positions is None:
        positions = torch.arange(T)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    heads = []
    for h in range(num_heads):
        kv = h // (num_heads // num_kv_heads)
        sl_q, sl_kv = slice(h * d_head, (h + 1) * d_head), slice(kv * d_head, (kv + 1) * d_head)
        q, k, v = linear(wq[sl_q], x), linear(wk[sl_kv], x), linear(wv[sl_kv], x)
        if theta is not None:
            q, k = rope(q, positions, theta), rope(k, positions, theta)
        heads.append(sdpa(q, k, v, causal))
    return linear(wo, torch.cat(heads, dim=-1))


def block(weights: dict[str, Tensor], x: Tensor, num_heads: int, theta: float, eps: float = 1e-5) -> Tensor:
    """Pre-norm block with the CS336 key names."""
    w = weights
    h = f64(x) + mha(
        w["attn.q_proj.weight"],
        w["attn.k_proj.weight"],
        w["attn.v_proj.weight"],
        w["attn.output_proj.weight"],
        rmsnorm(w["ln1.weight"], x, eps),
        num_heads,
        theta,
    )
    return h + swiglu(
        w["ffn.w1.weight"], w["ffn.w2.weight"], w["ffn.w3.weight"], rmsnorm(w["ln2.weight"], h, eps)
    )


def transformer_lm(
    weights: dict[str, Tensor], ids: Tensor, num_layers: int, num_heads: int, theta: float
) -> Tensor:
    x = embedding(weights["token_embeddings.weight"], ids)
    for i in range(num_layers):
        prefix = f"layers.{i}."
        layer = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        x = block(layer, x, num_heads, theta)
    return linear(weights["lm_head.weight"], rmsnorm(weights["ln_final.weight"], x, 1e-5))


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over rows of -log p(target), one row at a time."""
    logits = f64(logits).reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    losses = [torch.logsumexp(logits[i], 0) - logits[i, targets[i]] for i in range(logits.shape[0])]
    return torch.stack(losses).mean()


def cs336_weights(vocab: int, d_model: int, num_layers: int, d_ff: int, seed: int = 0) -> dict[str, Tensor]:
    """Random weights with the CS336 state-dict names (scaled so activations stay O(1))."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=1.0: torch.randn(*shape, generator=g) * s
    w: dict[str, Tensor] = {"token_embeddings.weight": r(vocab, d_model)}
    for i in range(num_layers):
        p = f"layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "output_proj"):
            w[p + f"attn.{name}.weight"] = r(d_model, d_model, s=d_model**-0.5)
        w[p + "ffn.w1.weight"] = r(d_ff, d_model, s=d_model**-0.5)
        w[p + "ffn.w3.weight"] = r(d_ff, d_model, s=d_model**-0.5)
        w[p + "ffn.w2.weight"] = r(d_model, d_ff, s=d_ff**-0.5)
        w[p + "ln1.weight"] = 1.0 + 0.1 * r(d_model)
        w[p + "ln2.weight"] = 1.0 + 0.1 * r(d_model)
    w["ln_final.weight"] = 1.0 + 0.1 * r(d_model)
    w["lm_head.weight"] = r(vocab, d_model, s=d_model**-0.5)
    return w
