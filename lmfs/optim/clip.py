"""Global-norm gradient clipping."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import Tensor


@torch.no_grad()
def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, eps: float = 1e-6) -> Tensor:
    """Scale all gradients in place by ``max_norm / (‖g‖ + eps)`` when their joint L2 norm ‖g‖ exceeds it.

    ‖g‖ is one norm over every gradient together (in float32, or float64 if a gradient is); parameters without a gradient are skipped.
    Returns ‖g‖ before clipping (a 0-dim tensor; 0 when no parameter has a gradient). Gradients are
    handled in (device, dtype) groups with multi-tensor ops, so a model with hundreds of tensors costs a few
    kernel launches, and nothing waits for the GPU (no ``.item()``).
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = defaultdict(list)
    for g in grads:
        groups[(g.device, g.dtype)].append(g)
    device = grads[0].device
    acc = torch.float32  # at least float32; float64 when some gradient is float64
    for _, dtype in groups:
        acc = torch.promote_types(acc, dtype)
    squares = []
    for (_, dtype), group in groups.items():
        norms = torch._foreach_norm(group, 2, dtype=torch.promote_types(dtype, torch.float32))
        squares.append(torch.stack(norms).to(acc).pow(2).sum().to(device))
    total = torch.stack(squares).sum().sqrt()
    coef = (max_norm / (total + eps)).clamp(max=1.0)
    for (dev, _), group in groups.items():
        torch._foreach_mul_(group, coef.to(dev))
    return total
