"""Position-wise feed-forward networks: SwiGLU and the plain SiLU ablation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lmfs.nn.functional import silu
from lmfs.nn.linear import Linear


class SwiGLU(nn.Module):
    """``W2(SiLU(W1 x) ⊙ W3 x)``; w1, w3: (d_ff, d_model), w2: (d_model, d_ff).

    forward: (..., d_model) -> (..., d_model).
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)
        self.w3 = Linear(d_model, d_ff, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)) * self.w3(x))


class SiLUFFN(nn.Module):
    """The ungated ablation ``W2(SiLU(W1 x))`` (use d_ff = 4·d_model to match SwiGLU's parameters).

    forward: (..., d_model) -> (..., d_model).
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device=device, dtype=dtype)
        self.w2 = Linear(d_ff, d_model, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(silu(self.w1(x)))
