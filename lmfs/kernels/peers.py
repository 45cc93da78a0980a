"""Peer attention: ``torch.nn.functional.scaled_dot_product_attention`` (SDPA) behind the model's seam, for the
benchmarks and comparisons (the ``sdpa*`` backends of :mod:`lmfs.kernels.attention_backends`; lmfs.nn never
calls it).

``sdpa_attention(None)`` lets PyTorch choose SDPA's kernel; ``"math"``, ``"flash"``, ``"cudnn"`` or
``"efficient"`` restrict it to that one (``sdpa_kernel``), and PyTorch raises if that kernel cannot run the call.
``flash`` and ``cudnn`` are used here without a mask: a ``mask`` (or causal with ``Tq ≠ Tk``, which needs one) is a
``ValueError``. SDPA's own ``is_causal`` is aligned to the start and excludes a mask; the seam's is aligned to
the end and combines with one, so causal with ``Tq ≠ Tk`` or with a mask is sent as one explicit mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lmfs.kernels.attention import match_kv_heads

if TYPE_CHECKING:
    from lmfs.nn.attention import AttentionFn

#: kernel name -> the ``torch.nn.attention.SDPBackend`` member it restricts SDPA to
SDPA_KERNELS = {
    "math": "MATH",
    "flash": "FLASH_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
}
_NO_MASK = ("flash", "cudnn")


def sdpa_attention(kernel: str | None = None) -> AttentionFn:
    """The seam callable running SDPA, restricted to ``kernel`` (a key of :data:`SDPA_KERNELS`) if given."""
    import torch.nn.functional as F

    if kernel is not None and kernel not in SDPA_KERNELS:
        raise ValueError(f"unknown SDPA kernel {kernel!r}; choose one of {', '.join(SDPA_KERNELS)}")
    name = "sdpa" if kernel is None else f"sdpa-{kernel}"

    def attention_fn(
        q: Tensor, k: Tensor, v: Tensor, *, is_causal: bool, mask: Tensor | None = None, scale: float | None = None
    ) -> Tensor:
        if mask is not None and mask.dtype != torch.bool:
            raise TypeError(f"attention backend {name!r}: mask must be a bool tensor (True = attend)")
        if is_causal and (mask is not None or q.shape[-2] != k.shape[-2]):  # SDPA takes one or the other
            from lmfs.nn.functional import causal_mask

            causal = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
            mask, is_causal = (causal if mask is None else mask & causal), False
        if mask is not None and kernel in _NO_MASK:
            raise ValueError(
                f"attention backend {name!r} takes no mask (SDPA's {kernel} kernel is used without one here); "
                "use 'sdpa' or 'sdpa-efficient' for masked attention"
            )
        k, v = match_kv_heads(q, k, v, f"attention backend {name!r}")
        extra = {} if scale is None else {"scale": scale}
        if mask is not None:
            extra["attn_mask"] = mask
        if kernel is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, **extra)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([getattr(SDPBackend, SDPA_KERNELS[kernel])]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, **extra)

    attention_fn.__name__ = name.replace("-", "_")
    attention_fn.supports_gqa = True  # type: ignore[attr-defined]
    return attention_fn
