"""Causal multi-head self-attention with one fused QKV projection, grouped-query heads and optional RoPE, and
the attention seam every kernel plugs into."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from lmfs.nn.functional import causal_attention, causal_mask
from lmfs.nn.kv_cache import KVCache
from lmfs.nn.linear import Linear
from lmfs.nn.rope import RotaryEmbedding


class AttentionFn(Protocol):
    """The attention seam: ``attention_fn(q, k, v, *, is_causal, mask=None, scale=None) -> out``.

    q: (B, H, Tq, D); k, v: (B, H, Tk, D) — or (B, Hkv, Tk, D) with ``H`` a multiple of ``Hkv`` when the
    callable has ``supports_gqa = True`` (see :func:`accepts_grouped_kv`); out: (B, H, Tq, D).

    * ``is_causal``: query i attends keys ``j ≤ i + (Tk − Tq)`` — ``j ≤ i`` for ``Tq == Tk``, the end-aligned
      diagonal otherwise (the queries are the last positions), as :func:`lmfs.nn.functional.causal_mask`.
    * ``mask``: bool, broadcastable to (B, H, Tq, Tk), True where a query may attend to a key. With
      ``is_causal`` too, a key must pass both.
    * ``scale``: the factor on ``q·k`` (default ``1/√D``).

    The model's default is :func:`lmfs.nn.functional.causal_attention`; the named implementations (lmfs's
    kernels and torch peers) are in ``lmfs.kernels.attention_backends``, which lmfs.nn does not import. A
    backend that cannot honour an argument falls back to a correct implementation or raises a ``ValueError``
    naming itself and the argument.
    """

    def __call__(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        *,
        is_causal: bool,
        mask: Tensor | None = None,
        scale: float | None = None,
    ) -> Tensor: ...


def accepts_grouped_kv(fn: AttentionFn) -> bool:
    """Whether ``fn`` takes K/V with fewer heads than Q (GQA) itself; if not, callers repeat the K/V heads."""
    return bool(getattr(fn, "supports_gqa", False))


def repeat_kv(x: Tensor, group: int) -> Tensor:
    """(..., Hkv, T, D) -> (..., Hkv·group, T, D): each K/V head repeated for the ``group`` query heads it serves."""
    return x if group == 1 else x.repeat_interleave(group, dim=-3)


class MultiHeadSelfAttention(nn.Module):
    """Causal self-attention.

    Parameters: ``qkv_proj.weight`` ((num_heads + 2·num_kv_heads)·d_head, d_model) — the rows of Wq, then Wk,
    then Wv, each with its heads concatenated along the output dim — and ``output_proj.weight``
    (d_model, num_heads·d_head). With ``num_kv_heads < num_heads`` (GQA) each K/V head serves
    ``num_heads / num_kv_heads`` consecutive query heads.

    ``attention_fn`` is the kernel seam (:class:`AttentionFn`, default
    :func:`lmfs.nn.functional.causal_attention`); replace the attribute to plug in e.g. FlashAttention
    (``lmfs.kernels.attention_backends.make_attention(name)``). The full forward hands it K/V with ``num_heads``
    heads.

    forward(x (..., seq, d_model), token_positions (..., seq) | None) -> (..., seq, d_model).

    With a :class:`~lmfs.nn.kv_cache.KVCache` (``kv_cache`` + this layer's index ``layer``), x holds only the new
    positions: their keys/values are appended to the cache and their queries attend to every cached position
    (causally among the new ones) through the same ``attention_fn``: ``is_causal=True`` when nothing was cached
    before, else ``is_causal=False`` with the end-aligned causal ``mask`` (no mask for a single new position,
    which sees every key). The cached K/V keep their ``num_kv_heads`` heads when ``attention_fn`` accepts grouped
    K/V (no copy of the cache), else they are repeated.
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
        group = self.num_heads // self.num_kv_heads
        return self.attention_fn(q, repeat_kv(k, group), repeat_kv(v, group), is_causal=True)  # (B, H, T, D)

    def _attend_cached(self, q: Tensor, k: Tensor, v: Tensor, cache: KVCache, layer: int) -> Tensor:
        """q (B, H, T, D) of the new positions against cached + new k, v (B, Hkv, L + T, D)."""
        keys, values = cache.update(layer, k.to(cache.keys[layer].dtype), v.to(cache.values[layer].dtype))
        keys, values = keys.to(q.dtype), values.to(q.dtype)
        if not accepts_grouped_kv(self.attention_fn):
            group = self.num_heads // self.num_kv_heads
            keys, values = repeat_kv(keys, group), repeat_kv(values, group)
        T, n_keys = q.shape[-2], keys.shape[-2]
        if T == n_keys:  # nothing cached before these positions: plain causal attention
            return self.attention_fn(q, keys, values, is_causal=True)
        # causal among the new positions, aligned to the end; one new position sees every key
        mask = causal_mask(T, n_keys, device=q.device) if T > 1 else None
        return self.attention_fn(q, keys, values, is_causal=False, mask=mask)  # (B, H, T, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, num_kv_heads={self.num_kv_heads}"
