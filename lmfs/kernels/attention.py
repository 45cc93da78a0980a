"""The ``(batch, heads, seq, d)`` entry point: FlashAttention as a model's ``attention_fn``.

A model's attention calls ``attention_fn(q, k, v, is_causal) -> out`` on ``(B, H, T, D)``;
:func:`make_attention_fn` returns such a callable for a backend:

* ``"triton"`` — :class:`~lmfs.kernels.flash_triton.FlashAttentionTriton` (CUDA, or the interpreter);
* ``"pytorch"`` — :class:`~lmfs.kernels.flash_pytorch.FlashAttentionPyTorch` (tiled, any device);
* ``"naive"`` — materialised scores + softmax in plain tensor ops (the baseline benchmarks compare against).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

AttentionFn = Callable[[Tensor, Tensor, Tensor, bool], Tensor]
ATTENTION_BACKENDS = ("triton", "pytorch", "naive")


def naive_attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False) -> Tensor:
    """Softmax(QKᵀ/√d)V with the full score matrix; ``(..., n, d)`` in, ``(..., n_q, d_v)`` out."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if is_causal:
        n_q, n_k = q.shape[-2], k.shape[-2]
        future = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    weights = scores.exp()
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ v


def _common_dtype(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Under autocast, cast to the autocast dtype (custom autograd Functions are not autocast-aware); otherwise
    promote mixed dtypes (e.g. fp32 RoPE'd q, k with a bf16 v) to a common one."""
    device_type = q.device.type
    if torch.is_autocast_enabled(device_type):
        target = torch.get_autocast_dtype(device_type)
    else:
        target = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    return q.to(target), k.to(target), v.to(target)


def flash_attention(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = False, backend: str = "triton") -> Tensor:
    """FlashAttention-2 on ``(..., seq, d)`` (typically ``(B, H, T, D)``) with autograd."""
    if backend == "triton":
        from lmfs.kernels.flash_triton import FlashAttentionTriton

        return FlashAttentionTriton.apply(q, k, v, is_causal)
    if backend == "pytorch":
        from lmfs.kernels.flash_pytorch import FlashAttentionPyTorch

        return FlashAttentionPyTorch.apply(q, k, v, is_causal)
    if backend == "naive":
        return naive_attention(q, k, v, is_causal)
    raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")


def make_attention_fn(backend: str = "triton") -> AttentionFn:
    """A callable ``(q, k, v, is_causal) -> out`` for the model's ``attention_fn`` seam."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose one of {', '.join(ATTENTION_BACKENDS)}")

    def attention_fn(q: Tensor, k: Tensor, v: Tensor, is_causal: bool = True) -> Tensor:
        q, k, v = _common_dtype(q, k, v)
        return flash_attention(q, k, v, is_causal, backend=backend)

    attention_fn.__name__ = f"flash_attention_{backend}"
    return attention_fn
