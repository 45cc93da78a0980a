"""A key/value cache for autoregressive decoding.

Without a cache every generated token re-runs the model over the whole context: O(T) work per layer per token
for the projections and FFN, and O(T²) attention. With it, each step runs the model on the new token only; its
key and value are appended to per-layer buffers and its query attends to every cached position.

The buffers are preallocated for ``max_len`` positions (the model's context length by default), so a step
allocates nothing that grows with the sequence. K/V are stored with the model's ``num_kv_heads`` heads (GQA
keeps the cache small); query heads are grouped onto them by broadcasting, not copying.
"""

from __future__ import annotations

import torch
from torch import Tensor


class KVCache:
    """Per-layer key/value buffers of shape (batch, num_kv_heads, max_len, d_head) and the filled length.

    Use :meth:`lmfs.nn.TransformerLM.new_kv_cache` to make one that fits a model, pass it as
    ``model(ids, kv_cache=cache)``; the model appends the keys/values of ``ids`` and advances :attr:`length`.
    """

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        max_len: int,
        d_head: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if min(num_layers, batch_size, num_kv_heads, max_len, d_head) < 1:
            raise ValueError(
                "KVCache: num_layers, batch_size, num_kv_heads, max_len and d_head must all be ≥ 1, got "
                f"{(num_layers, batch_size, num_kv_heads, max_len, d_head)}"
            )
        shape = (batch_size, num_kv_heads, max_len, d_head)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(num_layers)]
        self.max_len = max_len
        self.batch_size = batch_size
        self.length = 0  # positions filled (the same in every layer between forward calls)

    def reset(self) -> None:
        """Forget every cached position (the buffers are reused)."""
        self.length = 0

    def check_room(self, n_new: int, batch_size: int) -> None:
        """Raise a clear error before a forward call that would not fit."""
        if batch_size != self.batch_size:
            raise ValueError(f"KVCache holds batch size {self.batch_size}, got a batch of {batch_size}")
        if self.length + n_new > self.max_len:
            raise ValueError(
                f"KVCache is full: {self.length} cached + {n_new} new positions > max_len {self.max_len}; "
                "reset() it and re-feed the last tokens that should stay in the context"
            )

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, Hkv, T_new, D) after the cached positions; return all keys/values (B, Hkv, L + T_new, D).

        :attr:`length` is not advanced here (every layer writes at the same offset); the model calls
        :meth:`advance` once after its last layer.
        """
        start, end = self.length, self.length + k.shape[-2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        self.length += n
