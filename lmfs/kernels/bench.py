"""What the attention benchmarks share: the FLOP count, the implementations (lmfs and peers) and the timed
callables for forward / backward / forward+backward.

An implementation is a backend of :mod:`lmfs.kernels.attention_backends`, named by its benchmark label
(``lmfs-triton``, ``lmfs-pytorch``, ``naive``, ``torch-sdpa``, ``torch-sdpa-flash``, ``torch-sdpa-cudnn``, ...),
and called as ``impl(q, k, v, is_causal)`` on ``(batch, seq, d)`` (one head: the backend sees
``(batch, 1, seq, d)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lmfs.kernels.attention_backends import backend_with_label

AttnImpl = Callable[[Tensor, Tensor, Tensor, bool], Tensor]
MODES = ("fwd", "bwd", "fwd+bwd")


def attention_flops(batch: int, heads: int, n: int, d: int, is_causal: bool, mode: str) -> float:
    """The standard count: forward ``4·B·H·N²·D`` (×0.5 causal), backward 2.5× forward."""
    fwd = 4.0 * batch * heads * n * n * d * (0.5 if is_causal else 1.0)
    factor = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}
    if mode not in factor:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    return fwd * factor[mode]


def attention_impl(name: str) -> AttnImpl:
    """The backend whose benchmark label is ``name``, on ``(batch, seq, d)``."""
    fn = backend_with_label(name).make()

    def run(q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> Tensor:
        # the seam (and SDPA's fused kernels) want (B, H, N, D)
        return fn(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), is_causal=is_causal).squeeze(1)

    return run


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
