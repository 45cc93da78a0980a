"""Parameter initialization with tensor ops (no ``torch.nn.init``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


@torch.no_grad()
def trunc_normal_(tensor: Tensor, std: float = 1.0, a: float = -3.0, b: float = 3.0) -> Tensor:
    """Fill ``tensor`` in place with N(0, std²) truncated to [a, b] (absolute bounds), by inverse-CDF sampling.

    Draw u ~ U(Φ(a/std), Φ(b/std)) and map it through Φ⁻¹; exact, no rejection loop.
    """
    if std <= 0:
        raise ValueError(f"trunc_normal_: std must be positive, got {std}")
    cdf = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    lo, hi = cdf(a / std), cdf(b / std)
    work = torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device).uniform_(lo, hi)
    # Φ⁻¹(u) = √2 · erfinv(2u - 1); clamp guards the float ends
    work = torch.special.erfinv(work.mul_(2.0).sub_(1.0)).mul_(std * math.sqrt(2.0)).clamp_(a, b)
    tensor.copy_(work)
    return tensor
