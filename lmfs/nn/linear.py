"""Linear layer without bias."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lmfs.nn.init import trunc_normal_


class Linear(nn.Module):
    """``y = x Wᵀ``; weight (d_out, d_in) initialized N(0, 2/(d_in+d_out)) truncated at ±3σ.

    forward: (..., d_in) -> (..., d_out).
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.weight = nn.Parameter(torch.empty(d_out, d_in, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = math.sqrt(2.0 / (self.d_in + self.d_out))
        trunc_normal_(self.weight, std=std, a=-3 * std, b=3 * std)

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(x, self.weight.t())

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}"
