"""Model sizes for the benchmarks and the profiler: the presets of :mod:`lmfs.nn.presets` (the course's sizes
``tiny`` … ``2.7B`` and the named models), or a custom ``d_model,d_ff,num_layers,num_heads``.

A size is a preset's TransformerConfig fields without a context length (the benchmark sets it):
``make_config(size, context_length)`` builds the model's config.
"""

from __future__ import annotations

from typing import Any

from lmfs.nn.presets import PRESETS, course_size

BATCH_SIZE = 4

#: TransformerConfig fields of a size (a preset's), without ``context_length``
ModelSize = dict[str, Any]


def parse_size(text: str) -> tuple[str, ModelSize]:
    """A preset name (``small``, ``2.7B``, ``llama-124m``, …) or a custom ``d_model,d_ff,num_layers,num_heads``
    (e.g. ``128,512,2,4``, vocabulary 10 000)."""
    from lmfs.nn.config import config_problems
    from lmfs.nn.presets import preset_fields

    if text in PRESETS:
        size = preset_fields(text)
        size.pop("context_length", None)
        return text, size
    parts = text.split(",")
    if len(parts) == 4 and all(p.strip().isdigit() for p in parts):
        d_model, d_ff, layers, heads = (int(p) for p in parts)
        size = course_size(d_model, d_ff, layers, heads)
        problems = config_problems(size)
        if problems:
            raise ValueError(f"model size {text!r}: {'; '.join(problems)}")
        return f"custom-{d_model}-{d_ff}-{layers}-{heads}", size
    raise ValueError(
        f"unknown model size {text!r}; use one of {', '.join(PRESETS)} or 'd_model,d_ff,num_layers,num_heads'"
    )


def make_config(size: ModelSize, context_length: int, vocab_size: int | None = None):
    """The :class:`lmfs.nn.TransformerConfig` of a size at a context length (``vocab_size``: the size's own,
    10 000 for the course sizes, unless given)."""
    from lmfs.nn import TransformerConfig

    fields = {**size, "context_length": context_length}
    if vocab_size is not None:
        fields["vocab_size"] = vocab_size
    return TransformerConfig(**fields)
