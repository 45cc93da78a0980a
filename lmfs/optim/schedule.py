"""Learning-rate schedules."""

from __future__ import annotations

import math


def cosine_lr(it: int, max_lr: float, min_lr: float, warmup_iters: int, cosine_cycle_iters: int) -> float:
    """Linear warmup then cosine annealing.

    ``it < warmup_iters``: ``it / warmup_iters · max_lr``; ``warmup_iters ≤ it ≤ cosine_cycle_iters``:
    ``min_lr + ½(1 + cos(π (it − warmup)/(cycle − warmup)))(max_lr − min_lr)``; after: ``min_lr``.
    """
    if warmup_iters < 0 or cosine_cycle_iters < warmup_iters:
        raise ValueError(
            f"cosine_lr: need 0 ≤ warmup_iters ≤ cosine_cycle_iters, got {warmup_iters} and {cosine_cycle_iters}"
        )
    if it < warmup_iters:
        return it / warmup_iters * max_lr
    if it > cosine_cycle_iters:
        return min_lr
    span = cosine_cycle_iters - warmup_iters
    if span == 0:
        return max_lr
    progress = (it - warmup_iters) / span
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)
