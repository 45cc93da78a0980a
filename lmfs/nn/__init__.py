"""From-scratch neural-network layers and the Transformer language model (tensor ops only)."""

from lmfs._lazy import lazy_exports

_EXPORTS = {
    "AttentionFn": "lmfs.nn.attention",
    "Embedding": "lmfs.nn.embedding",
    "KVCache": "lmfs.nn.kv_cache",
    "Linear": "lmfs.nn.linear",
    "MultiHeadSelfAttention": "lmfs.nn.attention",
    "PRESETS": "lmfs.nn.presets",
    "RMSNorm": "lmfs.nn.rmsnorm",
    "RotaryEmbedding": "lmfs.nn.rope",
    "SiLUFFN": "lmfs.nn.ffn",
    "SwiGLU": "lmfs.nn.ffn",
    "TransformerBlock": "lmfs.nn.transformer",
    "TransformerConfig": "lmfs.nn.config",
    "TransformerLM": "lmfs.nn.transformer",
    "causal_attention": "lmfs.nn.functional",
    "causal_mask": "lmfs.nn.functional",
    "count_parameters": "lmfs.nn.transformer",
    "cross_entropy": "lmfs.nn.functional",
    "default_d_ff": "lmfs.nn.config",
    "fuse_qkv": "lmfs.nn.state_dict",
    "load_cs336_state_dict": "lmfs.nn.state_dict",
    "log_softmax": "lmfs.nn.functional",
    "preset": "lmfs.nn.presets",
    "scaled_dot_product_attention": "lmfs.nn.functional",
    "silu": "lmfs.nn.functional",
    "softmax": "lmfs.nn.functional",
    "split_qkv": "lmfs.nn.state_dict",
    "swiglu_hidden_dim": "lmfs.nn.ffn",
    "train_flops_per_token": "lmfs.nn.presets",
    "trunc_normal_": "lmfs.nn.init",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
