"""AdamW (Loshchilov & Hutter) written with tensor ops on top of the ``torch.optim.Optimizer`` base class."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay.

    For each parameter θ with gradient g, at step t = 1, 2, …::

        m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
        α_t = lr · √(1 − β₂ᵗ) / (1 − β₁ᵗ)
        θ ← θ − α_t · m / (√v + ε)       then   θ ← θ − lr · λ · θ

    ``foreach`` (default: on for CUDA parameters) updates all tensors of a group with multi-tensor ops;
    the result is the same math. Parameters without a gradient are skipped. ``lr`` may be changed in
    ``param_groups`` between steps (schedules do this).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        foreach: bool | None = None,
    ) -> None:
        if lr < 0:
            raise ValueError(f"AdamW: invalid learning rate {lr} (must be ≥ 0)")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamW: betas must lie in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(
                f"AdamW: eps and weight_decay must be ≥ 0, got eps={eps}, weight_decay={weight_decay}"
            )
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("AdamW does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(p.is_cuda for p in params)
            (self._step_foreach if foreach else self._step_loop)(group, params)
        return loss

    def _step_size(self, group: dict[str, Any], t: int) -> float:
        beta1, beta2 = group["betas"]
        return group["lr"] * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)

    def _step_loop(self, group: dict[str, Any], params: list[Tensor]) -> None:
        beta1, beta2 = group["betas"]
        decay = 1.0 - group["lr"] * group["weight_decay"]
        for p in params:
            state = self.state[p]
            m, v, g = state["exp_avg"], state["exp_avg_sq"], p.grad
            m.mul_(beta1).add_(g, alpha=1.0 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
            p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-self._step_size(group, state["step"]))
            if group["weight_decay"] != 0:
                p.mul_(decay)

    def _step_foreach(self, group: dict[str, Any], params: list[Tensor]) -> None:
        beta1, beta2 = group["betas"]
        decay = 1.0 - group["lr"] * group["weight_decay"]
        # parameters added to the group later can be at another step: bucket by (step, device, dtype)
        buckets: dict[tuple, list[Tensor]] = defaultdict(list)
        for p in params:
            buckets[(self.state[p]["step"], p.device, p.dtype)].append(p)
        for (t, _, _), ps in buckets.items():
            ms = [self.state[p]["exp_avg"] for p in ps]
            vs = [self.state[p]["exp_avg_sq"] for p in ps]
            gs = [p.grad for p in ps]
            torch._foreach_mul_(ms, beta1)
            torch._foreach_add_(ms, gs, alpha=1.0 - beta1)
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, gs, gs, value=1.0 - beta2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(ps, ms, denom, value=-self._step_size(group, t))
            if group["weight_decay"] != 0:
                torch._foreach_mul_(ps, decay)
