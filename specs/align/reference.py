"""Independent references for the alignment specs, written as plain loops over elements in float64 (Python
floats and ``math``) so they share no code or vectorization with any implementation under test."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _rows(t: torch.Tensor) -> list[list[float]]:
    return t.detach().double().reshape(-1, t.shape[-1]).tolist()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy over the last dim, one row at a time: H = log Z - sum_i p_i z_i with shifted logits."""
    out = []
    for row in _rows(logits):
        top = max(row)
        shifted = [z - top for z in row]
        weights = [math.exp(z) for z in shifted]
        total = math.fsum(weights)
        h = math.log(total) - math.fsum(w * z for w, z in zip(weights, shifted, strict=True)) / total
        out.append(h)
    return torch.tensor(out, dtype=torch.float64).reshape(logits.shape[:-1])


def label_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] per position, logits (B, T, V), labels (B, T)."""
    out = []
    for row, label in zip(_rows(logits), labels.reshape(-1).tolist(), strict=True):
        top = max(row)
        log_z = top + math.log(math.fsum(math.exp(z - top) for z in row))
        out.append(row[label] - log_z)
    return torch.tensor(out, dtype=torch.float64).reshape(labels.shape)


def masked_sum_rows(values: torch.Tensor, mask: torch.Tensor) -> list[float]:
    """Sum of the masked elements of each row of a 2-D tensor."""
    return [
        math.fsum(v for v, m in zip(vr, mr, strict=True) if m)
        for vr, mr in zip(values.double().tolist(), mask.bool().tolist(), strict=True)
    ]


def masked_normalize(values: torch.Tensor, mask: torch.Tensor, dim: int | None, constant: float) -> torch.Tensor:
    """Masked sum over ``dim`` (or everything) / constant, by moving ``dim`` last and looping over rows."""
    v, m = values.double(), mask.bool()
    if dim is None:
        flat = [x for x, keep in zip(v.reshape(-1).tolist(), m.reshape(-1).tolist(), strict=True) if keep]
        return torch.tensor(math.fsum(flat) / constant, dtype=torch.float64)
    v, m = v.movedim(dim, -1), m.movedim(dim, -1)
    sums = masked_sum_rows(v.reshape(-1, v.shape[-1]), m.reshape(-1, m.shape[-1]))
    return torch.tensor([s / constant for s in sums], dtype=torch.float64).reshape(v.shape[:-1])


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None) -> torch.Tensor:
    v, m = values.double(), mask.bool()
    if dim is None:
        flat = [x for x, keep in zip(v.reshape(-1).tolist(), m.reshape(-1).tolist(), strict=True) if keep]
        return torch.tensor(math.fsum(flat) / len(flat) if flat else math.nan, dtype=torch.float64)
    v, m = v.movedim(dim, -1), m.movedim(dim, -1)
    out = []
    for vr, mr in zip(v.reshape(-1, v.shape[-1]).tolist(), m.reshape(-1, m.shape[-1]).tolist(), strict=True):
        kept = [x for x, keep in zip(vr, mr, strict=True) if keep]
        out.append(math.fsum(kept) / len(kept) if kept else math.nan)
    return torch.tensor(out, dtype=torch.float64).reshape(v.shape[:-1])


def group_normalize(rewards: Sequence[float], group_size: int, eps: float, by_std: bool) -> list[float]:
    """Group-relative advantages; the std is the sample (n-1) std, as torch.std by default."""
    out: list[float] = []
    for start in range(0, len(rewards), group_size):
        group = [float(r) for r in rewards[start : start + group_size]]
        mean = math.fsum(group) / len(group)
        if by_std:
            var = math.fsum((r - mean) ** 2 for r in group) / (len(group) - 1) if len(group) > 1 else math.nan
            scale = math.sqrt(var) + eps
        else:
            scale = 1.0
        out.extend((r - mean) / scale for r in group)
    return out


def grpo_clip_token(advantage: float, log_p: float, old_log_p: float, eps: float) -> tuple[float, float, bool]:
    """(loss, d loss / d log_p, clipped) for one token of GRPO-Clip, case by case."""
    ratio = math.exp(log_p - old_log_p)
    low, high = 1.0 - eps, 1.0 + eps
    bounded = min(max(ratio, low), high)
    if advantage >= 0:
        clipped = ratio > high  # the objective min(r, clip r) * A takes the flat 1+eps piece
    else:
        clipped = ratio < low  # max(r, clip r) * A takes the flat 1-eps piece
    objective = bounded * advantage if clipped else ratio * advantage
    grad = 0.0 if clipped else -advantage * ratio
    return -objective, grad, clipped and advantage != 0
