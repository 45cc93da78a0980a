"""From-scratch neural-network layers and the Transformer language model (tensor ops only)."""

from lmfs.nn.attention import AttentionFn, MultiHeadSelfAttention
from lmfs.nn.config import TransformerConfig, default_d_ff, swiglu_hidden_dim
from lmfs.nn.embedding import Embedding
from lmfs.nn.ffn import SiLUFFN, SwiGLU
from lmfs.nn.functional import (
    causal_attention,
    causal_mask,
    cross_entropy,
    log_softmax,
    scaled_dot_product_attention,
    silu,
    softmax,
)
from lmfs.nn.init import trunc_normal_
from lmfs.nn.kv_cache import KVCache
from lmfs.nn.linear import Linear
from lmfs.nn.presets import PRESETS, preset
from lmfs.nn.rmsnorm import RMSNorm
from lmfs.nn.rope import RotaryEmbedding
from lmfs.nn.state_dict import fuse_qkv, load_cs336_state_dict, split_qkv
from lmfs.nn.transformer import TransformerBlock, TransformerLM, count_parameters

__all__ = [
    "PRESETS",
    "AttentionFn",
    "Embedding",
    "KVCache",
    "Linear",
    "MultiHeadSelfAttention",
    "RMSNorm",
    "RotaryEmbedding",
    "SiLUFFN",
    "SwiGLU",
    "TransformerBlock",
    "TransformerConfig",
    "TransformerLM",
    "causal_attention",
    "causal_mask",
    "count_parameters",
    "cross_entropy",
    "default_d_ff",
    "fuse_qkv",
    "load_cs336_state_dict",
    "log_softmax",
    "preset",
    "scaled_dot_product_attention",
    "silu",
    "softmax",
    "split_qkv",
    "swiglu_hidden_dim",
    "trunc_normal_",
]
