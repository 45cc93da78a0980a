"""The pre-norm Transformer block and the decoder-only language model."""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from lmfs.nn.attention import AttentionFn, MultiHeadSelfAttention
from lmfs.nn.config import TransformerConfig
from lmfs.nn.embedding import Embedding
from lmfs.nn.ffn import SiLUFFN, SwiGLU
from lmfs.nn.kv_cache import KVCache
from lmfs.nn.linear import Linear
from lmfs.nn.rmsnorm import RMSNorm
from lmfs.nn.rope import RotaryEmbedding


class NoNorm(nn.Module):
    """The identity, standing where an RMSNorm would be in the no-norm / post-norm ablations."""

    def forward(self, x: Tensor) -> Tensor:
        return x


def _norm(config: TransformerConfig, device, dtype) -> nn.Module:
    if config.norm == "none":
        return NoNorm()
    return RMSNorm(config.d_model, eps=config.eps, device=device, dtype=dtype)


class TransformerBlock(nn.Module):
    """One layer. pre-norm: ``x + attn(ln1(x))`` then ``+ ffn(ln2(·))``; post-norm: ``ln1(x + attn(x))`` then
    ``ln2(· + ffn(·))``; none: no normalization.

    Submodules (CS336 names): ``attn``, ``ln1``, ``ln2``, ``ffn`` (w1, w2[, w3]).
    forward(x (B, T, d_model), token_positions (B, T) | (T,) | None) -> (B, T, d_model).
    """

    def __init__(
        self,
        config: TransformerConfig,
        rope: RotaryEmbedding | None = None,
        attention_fn: AttentionFn | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.norm = config.norm
        self.attn = MultiHeadSelfAttention(
            config.d_model,
            config.num_heads,
            config.num_kv_heads,
            rope=rope,
            attention_fn=attention_fn,
            device=device,
            dtype=dtype,
        )
        ffn_cls = SwiGLU if config.ffn == "swiglu" else SiLUFFN
        self.ffn = ffn_cls(config.d_model, config.d_ff, device=device, dtype=dtype)
        self.ln1 = _norm(config, device, dtype)
        self.ln2 = _norm(config, device, dtype)

    def forward(
        self,
        x: Tensor,
        token_positions: Tensor | None = None,
        kv_cache: KVCache | None = None,
        layer: int = 0,
    ) -> Tensor:
        if self.norm == "post":
            x = self.ln1(x + self.attn(x, token_positions, kv_cache, layer))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(self.ln1(x), token_positions, kv_cache, layer)
        return x + self.ffn(self.ln2(x))


class TransformerLM(nn.Module):
    """Decoder-only Transformer language model.

    Parameter names follow the CS336 state dict: ``token_embeddings``, ``layers.{i}.…``, ``ln_final``,
    ``lm_head`` — except that each block's Q/K/V projections are fused into ``attn.qkv_proj``
    (see :func:`lmfs.nn.state_dict.load_cs336_state_dict`).

    forward(in_indices (B, T) long, T ≤ context_length) -> logits (B, T, vocab_size).

    Decoding: ``cache = model.new_kv_cache()``, then ``model(ids, kv_cache=cache)`` feeds only the positions
    after the cached ones (positions continue from ``cache.length``); see :mod:`lmfs.nn.kv_cache`.
    """

    def __init__(
        self,
        config: TransformerConfig,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        attention_fn: AttentionFn | None = None,
    ) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.token_embeddings = Embedding(config.vocab_size, config.d_model, device=device, dtype=dtype)
        rope = None
        if config.position == "rope":
            rope = RotaryEmbedding(config.rope_theta, config.d_head, config.context_length, device=device)
        self.rope = rope  # one table shared by every layer
        self.layers = nn.ModuleList(
            TransformerBlock(config, rope=rope, attention_fn=attention_fn, device=device, dtype=dtype)
            for _ in range(config.num_layers)
        )
        self.ln_final = _norm(config, device, dtype) if config.norm == "pre" else NoNorm()
        self.lm_head = Linear(config.d_model, config.vocab_size, device=device, dtype=dtype)
        if config.tie_embeddings:
            # a shared table must suit both ends: embeddings at N(0, 1) would give logits of size √d_model
            self.token_embeddings.reset_parameters(std=1.0 / math.sqrt(config.d_model))
            self.lm_head.weight = self.token_embeddings.weight

    def set_attention_fn(self, fn: AttentionFn) -> None:
        """Swap the attention kernel of every layer (e.g. to FlashAttention)."""
        for layer in self.layers:
            layer.attn.attention_fn = fn

    def forward(
        self, in_indices: Tensor, token_positions: Tensor | None = None, kv_cache: KVCache | None = None
    ) -> Tensor:
        seq = in_indices.shape[-1]
        if seq > self.config.context_length:
            raise ValueError(
                f"TransformerLM: input has {seq} tokens but context_length is {self.config.context_length}; "
                "crop the input to the last context_length tokens"
            )
        if kv_cache is not None:
            if in_indices.dim() != 2:
                raise ValueError(
                    f"with a KV cache, in_indices must be (batch, seq); got {tuple(in_indices.shape)}"
                )
            kv_cache.check_room(seq, in_indices.shape[0])
            if token_positions is None:
                start = kv_cache.length
                token_positions = torch.arange(start, start + seq, device=in_indices.device)
        x = self.token_embeddings(in_indices)
        every = self.config.activation_checkpointing
        recompute = every > 0 and self.training and kv_cache is None and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute and i % every == 0:
                # keep only the block's input; backward runs its forward again
                x = torch.utils.checkpoint.checkpoint(layer, x, token_positions, use_reentrant=False)
            else:
                x = layer(x, token_positions, kv_cache, i)
        if kv_cache is not None:
            kv_cache.advance(seq)
        return self.lm_head(self.ln_final(x))

    def new_kv_cache(
        self, batch_size: int = 1, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> KVCache:
        """An empty :class:`~lmfs.nn.kv_cache.KVCache` for this model (max_len ≤ context_length; default equal)."""
        max_len = self.config.context_length if max_len is None else max_len
        if not 1 <= max_len <= self.config.context_length:
            raise ValueError(
                f"max_len must be in [1, context_length={self.config.context_length}], got {max_len}"
            )
        weight = self.token_embeddings.weight
        return KVCache(
            self.config.num_layers,
            batch_size,
            self.config.kv_heads,
            max_len,
            self.config.d_head,
            device=weight.device,
            dtype=dtype or weight.dtype,
        )

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Distinct parameters; ``non_embedding`` leaves out the token embedding and the output projection."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= self.token_embeddings.weight.numel()
            if not self.config.tie_embeddings:
                total -= self.lm_head.weight.numel()
        return total


def count_parameters(model: nn.Module) -> dict[str, int]:
    """``{"total": …, "non_embedding": …}`` for a TransformerLM (non_embedding = total for other modules)."""
    total = sum(p.numel() for p in model.parameters())
    non_emb = model.num_parameters(non_embedding=True) if isinstance(model, TransformerLM) else total
    return {"total": total, "non_embedding": non_emb}
