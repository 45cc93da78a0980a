"""Projection weights prepacked for oneDNN's fp32 GEMM on the CPU.

A decode step multiplies a few rows (one per busy slot) by every weight matrix of the model, so it streams the
whole model from memory each step. MKL's GEMM behind ``x @ W.t()`` handles these skinny shapes poorly on this
kind of CPU (SmolLM2's 49152 × 576 LM head at 8 rows: ~19 ms, 6 GB/s); the same product on a weight reordered
once into oneDNN's blocked layout runs at ~9 ms, and the 30 layers' projections at 8 rows in ~33 ms instead of
~54 ms (``reports/data/infer``). :class:`PackedWeights` keeps one packed copy per projection (or per group of
projections concatenated along the output dim, e.g. SwiGLU's W1 and W3 as one GEMM) and repacks a weight whose
storage or version counter changed, so an engine over a model that is still being trained never multiplies by
stale weights.

Only float32 on the CPU (oneDNN has no float64 GEMM); everything else uses the model's own ``x @ W.t()``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def packing_available(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether weights of this device and dtype can be packed (CPU, float32, oneDNN in this torch build)."""
    if device.type != "cpu" or dtype != torch.float32 or not torch.backends.mkldnn.is_available():
        return False
    ops = torch.ops.mkldnn
    try:
        return hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise")
    except RuntimeError:  # pragma: no cover - an op namespace that fails to load
        return False


class PackedWeights:
    """``linear(x, *weights)`` = ``x @ cat(weights).t()`` on a oneDNN-packed copy of the weights.

    ``hint``: the row count the layout is chosen for (oneDNN picks its blocking from it; any hint ≥ 4 served
    1–256 rows equally well in the measurements, a hint of 1 was ~1.6× slower from 8 rows on).
    """

    def __init__(self, hint: int = 16) -> None:
        self.hint = max(1, int(hint))
        self._entries: dict[tuple[int, ...], tuple[tuple[tuple[int, int], ...], tuple[Tensor, ...], Tensor]] = {}
        self.repacks = 0

    def linear(self, x: Tensor, *weights: Tensor) -> Tensor:
        key = tuple(id(w) for w in weights)
        sig = tuple((w.data_ptr(), w._version) for w in weights)
        entry = self._entries.get(key)
        if entry is None or entry[0] != sig:
            entry = (sig, weights, self._pack(weights))
            self._entries[key] = entry
        return torch.ops.mkldnn._linear_pointwise(x, entry[2], None, "none", [], "")

    def _pack(self, weights: tuple[Tensor, ...]) -> Tensor:
        w = weights[0] if len(weights) == 1 else torch.cat(weights, 0)
        self.repacks += 1
        return torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), self.hint)

    def clear(self) -> None:
        self._entries.clear()

    @property
    def num_packed(self) -> int:
        return len(self._entries)
