"""lmfs's attention kernels behind the model's seam (:class:`lmfs.nn.attention.AttentionFn`), on ``(B, H, T, D)``:

* :func:`triton_flash_attention` — :class:`~lmfs.kernels.flash_triton.FlashAttentionTriton` (CUDA, or the
  interpreter); the ``"triton"`` backend of :mod:`lmfs.kernels.attention_backends`;
* :func:`pytorch_flash_attention` — :class:`~lmfs.kernels.flash_pytorch.FlashAttentionPyTorch` (tiled, any
  device); the ``"pytorch"`` backend;
* :func:`naive_attention` — materialised scores + softmax in plain tensor ops (the baseline benchmarks compare
  against); the ``"naive"`` backend.

The FlashAttention kernels take ``is_causal`` with ``Tq == Tk`` only. :func:`flash_attention` folds a custom
``scale`` into q, repeats grouped K/V heads, and sends a call with a ``mask`` (or causal with ``Tq ≠ Tk``) to
lmfs.nn's from-scratch masked attention, which is correct where the kernels have nothing to offer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lmfs.nn.attention import repeat_kv


def _triton_function() -> type[torch.autograd.Function]:
    from lmfs.kernels.flash_triton import FlashAttentionTriton

    return FlashAttentionTriton


def _pytorch_function() -> type[torch.autograd.Function]:
    from lmfs.kernels.flash_pytorch import FlashAttentionPyTorch

    return FlashAttentionPyTorch


_FLASH_FUNCTIONS = {"triton": _triton_function, "pytorch": _pytorch_function}


def match_kv_heads(q: Tensor, k: Tensor, v: Tensor, where: str) -> tuple[Tensor, Tensor]:
    """K/V with as many heads as q (dim -3): grouped heads (GQA) repeated for the query heads they serve."""
    if q.dim() < 3 or k.dim() < 3 or k.shape[-3] == q.shape[-3]:
        return k, v
    heads, kv_heads = q.shape[-3], k.shape[-3]
    if kv_heads > heads or heads % kv_heads:
        raise ValueError(f"{where}: {heads} query heads cannot share {kv_heads} key/value heads")
    group = heads // kv_heads
    return repeat_kv(k, group), repeat_kv(v, group)


def naive_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    is_causal: bool = False,
    *,
    mask: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """Softmax(QKᵀ·scale)V with the full score matrix; ``(..., n, d)`` in, ``(..., n_q, d_v)`` out.

    ``is_causal``: query i sees keys ``j ≤ i + (n_k − n_q)``; ``mask``: bool, True = attend; ``scale``: default
    ``1/√d``. Grouped K/V heads are repeated.
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(f"naive attention: mask must be a bool tensor (True = attend), got dtype {mask.dtype}")
    k, v = match_kv_heads(q, k, v, "naive attention")
    scores = q @ k.transpose(-1, -2)
    scores = scores / math.sqrt(q.shape[-1]) if scale is None else scores * scale
    if is_causal:
        n_q, n_k = q.shape[-2], k.shape[-2]
        future = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).triu(n_k - n_q + 1)
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    weights = scores.exp()
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights @ v


naive_attention.supports_gqa = True  # type: ignore[attr-defined]


def _common_dtype(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Under autocast, cast to the autocast dtype (custom autograd Functions are not autocast-aware); otherwise
    promote mixed dtypes (e.g. fp32 RoPE'd q, k with a bf16 v) to a common one."""
    device_type = q.device.type
    if torch.is_autocast_enabled(device_type):
        target = torch.get_autocast_dtype(device_type)
    else:
        target = torch.promote_types(torch.promote_types(q.dtype, k.dtype), v.dtype)
    return q.to(target), k.to(target), v.to(target)


def flash_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    is_causal: bool = False,
    mask: Tensor | None = None,
    scale: float | None = None,
    kernel: str = "triton",
) -> Tensor:
    """FlashAttention-2 (``kernel`` ``"triton"`` or ``"pytorch"``) on ``(..., seq, d)`` with autograd, behind the
    seam's arguments (see the module docstring for what runs where)."""
    if kernel not in _FLASH_FUNCTIONS:
        raise ValueError(f"unknown FlashAttention kernel {kernel!r}; choose one of {', '.join(_FLASH_FUNCTIONS)}")
    q, k, v = _common_dtype(q, k, v)
    if mask is not None or (is_causal and q.shape[-2] != k.shape[-2]):
        # the kernels have no mask and no end-aligned diagonal
        from lmfs.nn.functional import causal_attention

        return causal_attention(q, k, v, is_causal, mask=mask, scale=scale)
    k, v = match_kv_heads(q, k, v, f"FlashAttention ({kernel})")
    if scale is not None:  # the kernels scale by 1/√d: fold the rest into q
        q = q * (scale * math.sqrt(q.shape[-1]))
    return _FLASH_FUNCTIONS[kernel]().apply(q, k, v, is_causal)


def triton_flash_attention(
    q: Tensor, k: Tensor, v: Tensor, *, is_causal: bool, mask: Tensor | None = None, scale: float | None = None
) -> Tensor:
    """The ``"triton"`` backend: :func:`flash_attention` with the Triton kernels."""
    return flash_attention(q, k, v, is_causal=is_causal, mask=mask, scale=scale, kernel="triton")


def pytorch_flash_attention(
    q: Tensor, k: Tensor, v: Tensor, *, is_causal: bool, mask: Tensor | None = None, scale: float | None = None
) -> Tensor:
    """The ``"pytorch"`` backend: :func:`flash_attention` with the tiled PyTorch kernel."""
    return flash_attention(q, k, v, is_causal=is_causal, mask=mask, scale=scale, kernel="pytorch")


triton_flash_attention.supports_gqa = True  # type: ignore[attr-defined]
pytorch_flash_attention.supports_gqa = True  # type: ignore[attr-defined]
