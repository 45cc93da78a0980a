"""Global-norm gradient clipping."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, eps: float = 1e-6) -> Tensor:
    """Scale all gradients in place by ``max_norm / (‖g‖ + eps)`` when their joint L2 norm ‖g‖ exceeds it.

    ‖g‖ is one norm over every gradient together (float32); parameters without a gradient are skipped.
    Returns ‖g‖ before clipping (a 0-dim float32 tensor; 0 when no parameter has a gradient).
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack([g.detach().float().pow(2).sum().to(grads[0].device) for g in grads])
    total = norms.sum().sqrt()
    coef = (max_norm / (total + eps)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.to(g.dtype))
    return total
