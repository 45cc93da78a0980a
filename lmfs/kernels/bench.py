"""What the attention benchmarks share: the FLOP count, the implementations (lmfs and peers) and the timed
callables for forward / backward / forward+backward.

Implementations take ``(q, k, v, is_causal)`` on ``(batch, seq, d)``:

========================  ===================================================================
``lmfs-triton``           :class:`~lmfs.kernels.flash_triton.FlashAttentionTriton`
``lmfs-pytorch``          :class:`~lmfs.kernels.flash_pytorch.FlashAttentionPyTorch` (tiled)
``naive``                 materialised scores (:func:`~lmfs.kernels.attention.naive_attention`)
``torch-sdpa``            ``F.scaled_dot_product_attention``, backend chosen by PyTorch
``torch-sdpa-flash``      SDPA restricted to its FlashAttention-2 backend (CUDA)
``torch-sdpa-cudnn``      SDPA restricted to its cuDNN backend (CUDA)
========================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lmfs.kernels.attention import flash_attention, naive_attention

AttnImpl = Callable[[Tensor, Tensor, Tensor, bool], Tensor]
MODES = ("fwd", "bwd", "fwd+bwd")


def attention_flops(batch: int, heads: int, n: int, d: int, is_causal: bool, mode: str) -> float:
    """The standard count: forward ``4·B·H·N²·D`` (×0.5 causal), backward 2.5× forward."""
    fwd = 4.0 * batch * heads * n * n * d * (0.5 if is_causal else 1.0)
    factor = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}
    if mode not in factor:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    return fwd * factor[mode]


def _sdpa(backend: str | None) -> AttnImpl:
    import torch.nn.functional as F

    def run(q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> Tensor:
        q4, k4, v4 = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)  # the fused backends want (B, H, N, D)
        if backend is None:
            return F.scaled_dot_product_attention(q4, k4, v4, is_causal=is_causal).squeeze(1)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        chosen = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]
        with sdpa_kernel([chosen]):
            return F.scaled_dot_product_attention(q4, k4, v4, is_causal=is_causal).squeeze(1)

    return run


def attention_impl(name: str) -> AttnImpl:
    """The implementation called ``name`` (see the module docstring)."""
    table: dict[str, Callable[[], AttnImpl]] = {
        "lmfs-triton": lambda: (lambda q, k, v, c: flash_attention(q, k, v, c, backend="triton")),
        "lmfs-pytorch": lambda: (lambda q, k, v, c: flash_attention(q, k, v, c, backend="pytorch")),
        "naive": lambda: naive_attention,
        "torch-sdpa": lambda: _sdpa(None),
        "torch-sdpa-flash": lambda: _sdpa("flash"),
        "torch-sdpa-cudnn": lambda: _sdpa("cudnn"),
    }
    if name not in table:
        raise ValueError(f"unknown attention implementation {name!r}; choose one of {sorted(table)}")
    return table[name]()


def random_inputs(
    batch: int, n: int, d: int, dtype: torch.dtype, device: str | torch.device, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random Q, K, V (leaf tensors that need grads) and an upstream gradient, shape ``(batch, n, d)``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    q, k, v, g = (torch.randn(batch, n, d, device=device, dtype=dtype, generator=gen) for _ in range(4))
    return q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True), g


def timed_callable(impl: AttnImpl, q: Tensor, k: Tensor, v: Tensor, grad: Tensor, is_causal: bool, mode: str):
    """A zero-argument callable doing one ``mode`` step. For ``bwd`` the forward runs once here and each call
    replays the backward (``retain_graph``); callers reset ``q/k/v.grad`` between calls if they care."""
    if mode == "fwd":
        def fwd() -> None:
            with torch.no_grad():
                impl(q, k, v, is_causal)
        return fwd
    if mode == "fwd+bwd":
        def fwd_bwd() -> None:
            impl(q, k, v, is_causal).backward(grad)
        return fwd_bwd
    if mode == "bwd":
        out = impl(q, k, v, is_causal)

        def bwd() -> None:
            out.backward(grad, retain_graph=True)
        return bwd
    raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
