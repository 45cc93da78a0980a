"""Independent references for the scaling specs (they never import lmfs).

* :func:`reference_lm_flops` — FlopCounterMode's count for a plain functional pre-norm SwiGLU Transformer LM
  (the CS336 architecture) on one batch, forward and forward + backward.
* :func:`chinchilla_loss`, :func:`law_grid` — synthetic data from a known ``L = E + A/N^α + B/D^β``.
* :func:`isoflop_parabola_table` — isoFLOP runs whose losses are exact parabolas in ``ln N``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode


def _rmsnorm(x: torch.Tensor, g: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def _forward(w: dict[str, torch.Tensor], ids: torch.Tensor, num_layers: int, num_heads: int) -> torch.Tensor:
    B, T = ids.shape
    x = w["emb"][ids]
    d = x.shape[-1]
    dh = d // num_heads
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(num_layers):
        h = _rmsnorm(x, w[f"{i}.ln1"])
        q, k, v = (
            t.view(B, T, num_heads, dh).transpose(1, 2)
            for t in (h @ w[f"{i}.wq"].T, h @ w[f"{i}.wk"].T, h @ w[f"{i}.wv"].T)
        )
        s = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        p = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
        a = (p @ v).transpose(1, 2).reshape(B, T, d)
        x = x + a @ w[f"{i}.wo"].T
        h = _rmsnorm(x, w[f"{i}.ln2"])
        x = x + (F.silu(h @ w[f"{i}.w1"].T) * (h @ w[f"{i}.w3"].T)) @ w[f"{i}.w2"].T
    return _rmsnorm(x, w["lnf"]) @ w["head"].T


def reference_lm_flops(
    vocab_size: int,
    context_length: int,
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int,
    batch_size: int,
) -> tuple[int, int]:
    """(forward FLOPs, forward + backward FLOPs) that FlopCounterMode counts (matmuls only)."""
    g = torch.Generator().manual_seed(0)
    shapes = {"emb": (vocab_size, d_model), "lnf": (d_model,), "head": (vocab_size, d_model)}
    for i in range(num_layers):
        shapes |= {
            f"{i}.ln1": (d_model,),
            f"{i}.ln2": (d_model,),
            f"{i}.wq": (d_model, d_model),
            f"{i}.wk": (d_model, d_model),
            f"{i}.wv": (d_model, d_model),
            f"{i}.wo": (d_model, d_model),
            f"{i}.w1": (d_ff, d_model),
            f"{i}.w3": (d_ff, d_model),
            f"{i}.w2": (d_model, d_ff),
        }
    w = {k: (torch.randn(s, generator=g) * 0.02).requires_grad_() for k, s in shapes.items()}
    ids = torch.randint(0, vocab_size, (batch_size, context_length), generator=g)
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            _forward(w, ids, num_layers, num_heads)
    with FlopCounterMode(display=False) as both:
        logits = _forward(w, ids, num_layers, num_heads)
        F.cross_entropy(logits.reshape(-1, vocab_size), ids.reshape(-1)).backward()
    return int(fwd.get_total_flops()), int(both.get_total_flops())


def chinchilla_loss(
    n: np.ndarray, d: np.ndarray, E: float, A: float, B: float, alpha: float, beta: float
) -> np.ndarray:
    return E + A / n**alpha + B / d**beta


def law_grid(n_sizes: int = 8, n_token_counts: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A (N, D) design: sizes 1e7…1e10 × tokens 1e8…1e12, flattened (n_sizes·n_token_counts rows)."""
    n, d = np.meshgrid(np.geomspace(1e7, 1e10, n_sizes), np.geomspace(1e8, 1e12, n_token_counts))
    return n.ravel(), d.ravel()


def isoflop_parabola_table(
    k: float, a: float, budgets: np.ndarray, offsets: np.ndarray, curvature: float = 0.05
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs at ``N = N*(C)·exp(offsets)`` with ``N*(C) = k·C^a`` and loss ``L₀(C) + curvature·(ln N − ln N*)²``
    (``L₀(C) = 10·C^(−0.05)``): each budget's losses are an exact parabola in ``ln N`` with vertex at N*."""
    cs, ns, ls = [], [], []
    for c in budgets:
        n_star = k * c**a
        for off in offsets:
            cs.append(c)
            ns.append(n_star * math.exp(off))
            ls.append(10.0 * c**-0.05 + curvature * off * off)
    return np.array(ns), np.array(cs), np.array(ls)
