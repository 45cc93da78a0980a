"""Peer attention functions for benchmarks (built-ins are allowed here, never in lmfs itself)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def sdpa_attention_fn(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = True) -> Tensor:
    """``F.scaled_dot_product_attention`` as a model ``attention_fn`` on ``(B, H, T, D)``."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
