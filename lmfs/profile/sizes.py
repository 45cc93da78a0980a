"""The course's model sizes (CS336 assignment 2, §1.1.2) plus tiny ones that run on a CPU box."""

from __future__ import annotations

from dataclasses import dataclass

VOCAB_SIZE = 10_000
BATCH_SIZE = 4


@dataclass(frozen=True)
class ModelSize:
    d_model: int
    d_ff: int
    num_layers: int
    num_heads: int


MODEL_SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(64, 256, 2, 4),  # lmfs: for CPU smoke runs and tests
    "mini": ModelSize(256, 1024, 4, 4),  # lmfs: a CPU-practical step (~1 s)
    "small": ModelSize(768, 3072, 12, 12),
    "medium": ModelSize(1024, 4096, 24, 16),
    "large": ModelSize(1280, 5120, 36, 20),
    "xl": ModelSize(1600, 6400, 48, 25),
    "2.7B": ModelSize(2560, 10240, 32, 32),
}


def parse_size(text: str) -> tuple[str, ModelSize]:
    """A size name (``small``, ``2.7B``, …) or a custom ``d_model,d_ff,num_layers,num_heads`` (e.g. ``128,512,2,4``)."""
    if text in MODEL_SIZES:
        return text, MODEL_SIZES[text]
    parts = text.split(",")
    if len(parts) == 4 and all(p.strip().isdigit() for p in parts):
        d_model, d_ff, layers, heads = (int(p) for p in parts)
        if d_model % heads:
            raise ValueError(f"model size {text!r}: d_model ({d_model}) must be divisible by num_heads ({heads})")
        return f"custom-{d_model}-{d_ff}-{layers}-{heads}", ModelSize(d_model, d_ff, layers, heads)
    raise ValueError(
        f"unknown model size {text!r}; use one of {', '.join(MODEL_SIZES)} or 'd_model,d_ff,num_layers,num_heads'"
    )


def make_config(size: ModelSize, context_length: int, vocab_size: int = VOCAB_SIZE):
    """The :class:`lmfs.nn.TransformerConfig` of a size at a context length."""
    from lmfs.nn import TransformerConfig

    return TransformerConfig(
        vocab_size=vocab_size, context_length=context_length, d_model=size.d_model, num_layers=size.num_layers,
        num_heads=size.num_heads, d_ff=size.d_ff, rope_theta=10000.0,
    )
