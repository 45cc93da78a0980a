"""Rotary position embedding (RoPE) on interleaved pairs."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RotaryEmbedding(nn.Module):
    """Rotates each adjacent pair (x[2k], x[2k+1]) of the last dim by angle ``pos · theta^(-2k/d_k)``.

    cos/sin tables of shape (max_seq_len, d_k/2) are computed once (float32) as non-persistent buffers.
    forward(x (..., seq, d_k), token_positions (..., seq) broadcastable to x's leading dims, or None for
    0..seq-1) -> (..., seq, d_k) in x's dtype.
    """

    def __init__(
        self, theta: float, d_k: int, max_seq_len: int, device: torch.device | str | None = None
    ) -> None:
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RotaryEmbedding: d_k must be even to form pairs, got {d_k}")
        self.theta, self.d_k, self.max_seq_len = theta, d_k, max_seq_len
        inv_freq = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float64) / d_k)
        angles = torch.arange(max_seq_len, device=device, dtype=torch.float64)[:, None] * inv_freq[None, :]
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: Tensor, token_positions: Tensor | None = None) -> Tensor:
        seq = x.shape[-2]
        if token_positions is None:
            if seq > self.max_seq_len:
                raise ValueError(f"RoPE: sequence length {seq} exceeds max_seq_len {self.max_seq_len}")
            cos, sin = self.cos[:seq], self.sin[:seq]
        else:
            cos, sin = self.cos[token_positions], self.sin[token_positions]
        x32 = x.float()
        x_even, x_odd = x32[..., 0::2], x32[..., 1::2]
        out = torch.stack((x_even * cos - x_odd * sin, x_even * sin + x_odd * cos), dim=-1)
        return out.flatten(-2).to(x.dtype)

    def extra_repr(self) -> str:
        return f"theta={self.theta}, d_k={self.d_k}, max_seq_len={self.max_seq_len}"
