"""Named model shapes shared by the CLI (``lmfs model info``, ``lmfs scaling flops``, ``lmfs bench model``,
``lmfs profile``), the sweeps, the benchmarks and the README.

Each preset is a set of :class:`~lmfs.nn.config.TransformerConfig` fields. The course sizes (CS336 assignment
2, §1.1.2, plus ``tiny`` and ``mini`` for a CPU box) fix no context length: give one,
``preset("small", context_length=512)``; their vocabulary is :data:`DEFAULT_VOCAB_SIZE`.
"""

from __future__ import annotations

from typing import Any

from lmfs.nn.config import TransformerConfig

DEFAULT_VOCAB_SIZE = 10_000


def course_size(d_model: int, d_ff: int, num_layers: int, num_heads: int) -> dict[str, Any]:
    """The fields of a course-style size: these four, at the default vocabulary, no context length."""
    return dict(
        vocab_size=DEFAULT_VOCAB_SIZE, d_model=d_model, d_ff=d_ff, num_layers=num_layers, num_heads=num_heads
    )


#: the course's model sizes (no context length)
COURSE_SIZES: dict[str, dict[str, Any]] = {
    "tiny": course_size(64, 256, 2, 4),  # lmfs: for CPU smoke runs and tests
    "mini": course_size(256, 1024, 4, 4),  # lmfs: a CPU-practical step (~1 s)
    "small": course_size(768, 3072, 12, 12),
    "medium": course_size(1024, 4096, 24, 16),
    "large": course_size(1280, 5120, 36, 20),
    "xl": course_size(1600, 6400, 48, 25),
    "2.7B": course_size(2560, 10240, 32, 32),
}

PRESETS: dict[str, dict[str, Any]] = {
    # CS336 assignment 1's TinyStories model
    "cs336-tinystories": dict(
        vocab_size=10000,
        context_length=256,
        d_model=512,
        num_layers=4,
        num_heads=16,
        d_ff=1344,
        rope_theta=10000.0,
    ),
    # the 124M Llama-shaped model of the GPU throughput benchmark
    "llama-124m": dict(
        vocab_size=32000, context_length=1024, d_model=768, num_layers=12, num_heads=12, d_ff=2048
    ),
    # SmolLM2-135M (what the GGUF loader builds)
    "smollm2-135m": dict(
        vocab_size=49152,
        context_length=8192,
        d_model=576,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        d_ff=1536,
        rope_theta=100000.0,
        tie_embeddings=True,
    ),
    **COURSE_SIZES,
}


def preset_fields(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s fields (a course size has no ``context_length``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def preset(name: str, **overrides: Any) -> TransformerConfig:
    """The TransformerConfig called ``name`` (see :data:`PRESETS`), with keyword overrides."""
    fields = {**preset_fields(name), **overrides}
    if "context_length" not in fields:
        raise ValueError(f"model preset {name!r} fixes no context length; pass context_length=...")
    return TransformerConfig(**fields)
