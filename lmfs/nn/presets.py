"""Named model shapes used in the course, the benchmarks and the README."""

from __future__ import annotations

from lmfs.nn.config import TransformerConfig

PRESETS: dict[str, dict] = {
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
}


def preset(name: str, **overrides) -> TransformerConfig:
    """The TransformerConfig called ``name`` (see :data:`PRESETS`), with keyword overrides."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return TransformerConfig(**{**PRESETS[name], **overrides})


def train_flops_per_token(config: TransformerConfig) -> float:
    """6·N + 12·L·d·T: N = parameters outside the input embedding (the matmuls), plus attention scores."""
    d, L, kv = config.d_model, config.num_layers, config.kv_heads
    per_layer = d * (config.num_heads + 2 * kv) * config.d_head + d * d
    per_layer += (3 if config.ffn == "swiglu" else 2) * d * config.d_ff
    n_matmul = L * per_layer + d * config.vocab_size
    return 6.0 * n_matmul + 12.0 * L * d * config.context_length
