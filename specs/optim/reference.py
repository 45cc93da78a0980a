"""Independent references for the optim specs: the AdamW algorithm of the CS336 handout (Loshchilov & Hutter),
one parameter at a time in float64, and the warmup + cosine schedule as a formula."""

from __future__ import annotations

import math

import torch


class ReferenceAdamW:
    """Plain-Python AdamW on float64 copies: decay applied after the Adam update, t counted from 1."""

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: float,
        betas: tuple[float, float],
        eps: float,
        weight_decay: float,
    ):
        self.params = [p.detach().double().clone() for p in params]
        self.lr, self.betas, self.eps, self.wd = lr, betas, eps, weight_decay
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads: list[torch.Tensor]) -> None:
        self.t += 1
        b1, b2 = self.betas
        alpha = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for i, g in enumerate(grads):
            g = g.double()
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            self.params[i] = self.params[i] - alpha * self.m[i] / (torch.sqrt(self.v[i]) + self.eps)
            self.params[i] = self.params[i] - self.lr * self.wd * self.params[i]


def cosine_schedule(it: int, lr_max: float, lr_min: float, warmup: int, cycle: int) -> float:
    if it < warmup:
        return lr_max * it / warmup
    if it <= cycle:
        return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * (it - warmup) / (cycle - warmup))) / 2
    return lr_min
