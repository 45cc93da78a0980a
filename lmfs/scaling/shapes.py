"""Model shapes from a target parameter count (for sweeps).

N here counts **non-embedding** parameters (blocks + final norm; no token embedding, no lm_head), as Kaplan
et al. (2020) do: at a fixed vocabulary of 10k the embedding and lm_head of a 0.1–3 M-parameter model are
larger than the model itself, and counting them bends the law (a model with d_model 64 would be 1.4 M
"parameters", 90% of them a lookup table). Their *compute* is not ignored: a sweep spends its budget on the
exact training FLOPs (:mod:`lmfs.scaling.accounting`), lm_head included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lmfs.nn.config import TransformerConfig
from lmfs.scaling.accounting import param_count


@dataclass(frozen=True)
class ShapeRule:
    """How a size becomes a shape: ``d_model ≈ aspect·num_layers``, heads of ``head_dim``, SwiGLU
    ``d_ff ≈ 8/3·d_model`` (multiple of ``ff_multiple``), ``d_model`` a multiple of ``d_multiple``."""

    aspect: float = 48.0
    head_dim: int = 32
    d_multiple: int = 32
    ff_multiple: int = 32
    min_layers: int = 1
    max_layers: int = 48


def shape_for_params(
    n_target: float, vocab_size: int, context_length: int, rule: ShapeRule | None = None
) -> TransformerConfig:
    """The shape whose non-embedding parameter count is nearest to ``n_target`` (in log ratio) among the
    shapes with ``num_layers`` within ±1 of the aspect rule's ``(N/(12·aspect²))^(1/3)``."""
    r = rule or ShapeRule()
    if n_target <= 0:
        raise ValueError(f"shape_for_params: n_target must be > 0, got {n_target}")
    guess = max(r.min_layers, min(r.max_layers, round((n_target / (12 * r.aspect**2)) ** (1 / 3))))
    best: tuple[float, TransformerConfig] | None = None
    for layers in range(max(r.min_layers, guess - 1), min(r.max_layers, guess + 1) + 1):
        for k in range(1, 129):
            d = r.d_multiple * k
            heads = max(1, d // r.head_dim)
            if d % heads or (d // heads) % 2:
                continue
            d_ff = max(r.ff_multiple, r.ff_multiple * round(8 * d / 3 / r.ff_multiple))
            shape = TransformerConfig(
                vocab_size=vocab_size,
                context_length=context_length,
                d_model=d,
                num_layers=layers,
                num_heads=heads,
                d_ff=d_ff,
            )
            n = param_count(shape).non_embedding
            score = abs(math.log(n / n_target)) + 0.05 * abs(d / layers - r.aspect) / r.aspect
            if best is None or score < best[0]:
                best = (score, shape)
            if n > 2 * n_target:
                break
    assert best is not None
    return best[1]
