"""Causal multi-head self-attention with one fused QKV projection, grouped-query heads and optional RoPE."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lmfs.nn.functional import causal_attention, causal_mask, scaled_dot_product_attention
from lmfs.nn.kv_cache import KVCache
from lmfs.nn.linear import Linear
from lmfs.nn.rope import RotaryEmbedding

AttentionFn = Callable[[Tensor, Tensor, Tensor, bool], Tensor]
"""``(q, k, v, is_causal) -> out``, all (B, H, T, D); k and v already have ``num_heads`` heads."""


class MultiHeadSelfAttention(nn.Module):
    """Causal self-attention.

    Parameters: ``qkv_proj.weight`` ((num_heads + 2·num_kv_heads)·d_head, d_model) — the rows of Wq, then Wk,
    then Wv, each with its heads concatenated along the output dim — and ``output_proj.weight``
    (d_model, num_heads·d_head). With ``num_kv_heads < num_heads`` (GQA) each K/V head serves
    ``num_heads / num_kv_heads`` consecutive query heads.

    ``attention_fn`` is the kernel seam (default :func:`lmfs.nn.functional.causal_attention`); replace the
    attribute to plug in e.g. FlashAttention.

    forward(x (..., seq, d_model), token_positions (..., seq) | None) -> (..., seq, d_model).

    With a :class:`~lmfs.nn.kv_cache.KVCache` (``kv_cache`` + this layer's index ``layer``), x holds only the new
    positions: their keys/values are appended to the cache and their queries attend to every cached position
    (causally among the new ones). That path uses the masked from-scratch attention, not ``attention_fn``.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        num_kv_heads: int | None = None,
        rope: RotaryEmbedding | None = None,
        attention_fn: AttentionFn | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if d_model % num_heads:
            raise ValueError(
                f"MultiHeadSelfAttention: d_model {d_model} is not divisible by num_heads {num_heads}"
            )
        if num_heads % num_kv_heads:
            raise ValueError(
                f"MultiHeadSelfAttention: num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads}"
            )
        self.d_model, self.num_heads, self.num_kv_heads = d_model, num_heads, num_kv_heads
        self.d_head = d_model // num_heads
        self.qkv_proj = Linear(
            d_model, (num_heads + 2 * num_kv_heads) * self.d_head, device=device, dtype=dtype
        )
        self.output_proj = Linear(num_heads * self.d_head, d_model, device=device, dtype=dtype)
        self.rope = rope
        self.attention_fn: AttentionFn = attention_fn or causal_attention

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        *lead, seq, _ = x.shape
        x3 = x.reshape(-1, seq, self.d_model)  # (B, T, d_model)
        B = x3.shape[0]
        qkv = self.qkv_proj(x3)
        q_size, kv_size = self.num_heads * self.d_head, self.num_kv_heads * self.d_head
        q, k, v = qkv.split((q_size, kv_size, kv_size), dim=-1)
        q = q.view(B, seq, self.num_heads, self.d_head).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, seq, self.num_kv_heads, self.d_head).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(B, seq, self.num_kv_heads, self.d_head).transpose(1, 2)
        if self.rope is not None:
            pos = None
            if token_positions is not None:
                # (..., T) -> (B or 1, 1, T): broadcast over heads
                pos = token_positions.reshape(-1, seq) if token_positions.dim() > 1 else token_positions[None]
                pos = pos.unsqueeze(1)
            q, k = self.rope(q, pos), self.rope(k, pos)
        if kv_cache is not None:
            out = self._attend_cached(q, k, v, kv_cache, layer)
        else:
            out = self._attend(q, k, v)
        out = out.transpose(1, 2).reshape(B, seq, self.num_heads * self.d_head)
        return self.output_proj(out).reshape(*lead, seq, self.d_model)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.num_kv_heads != self.num_heads:
            group = self.num_heads // self.num_kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        return self.attention_fn(q, k, v, True)  # (B, H, T, D)

    def _attend_cached(self, q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int) -> Tensor:
        """q (B, H, T, D) of the new positions against cached + new k, v (B, Hkv, L + T, D)."""
        keys, values = cache.update(layer, k.to(cache.keys[layer].dtype), v.to(cache.values[layer].dtype))
        B, H, T, D = q.shape
        group = H // self.num_kv_heads
        # query heads of one K/V head side by side: (B, Hkv, group, T, D) against (B, Hkv, 1, L + T, D)
        qg = q.reshape(B, self.num_kv_heads, group, T, D)
        mask = causal_mask(T, keys.shape[-2], device=q.device)
        out = scaled_dot_product_attention(
            qg, keys.unsqueeze(2).to(q.dtype), values.unsqueeze(2).to(q.dtype), mask
        )
        return out.reshape(B, H, T, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}"
