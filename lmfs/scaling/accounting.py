"""Parameters, FLOPs and memory of lmfs's Transformer LM, by arithmetic on its shape (no torch needed).

The model (``lmfs.nn.TransformerLM``): token embedding; ``num_layers`` blocks of [RMSNorm, fused QKV projection
(grouped-query heads allowed), RoPE on Q and K, causal softmax attention computed in full (the mask is applied
to the full T×T scores), output projection, RMSNorm, SwiGLU (w1, w3, w2) or SiLU (w1, w2) FFN]; final RMSNorm;
``lm_head`` (optionally tied to the embedding). No biases.

FLOP conventions (forward, per the shapes of one batch ``B × T``):

* a matmul ``(m×k)·(k×n)`` costs ``2·m·k·n``; the embedding lookup costs 0;
* attention scores ``Q·Kᵀ`` and ``P·V`` are counted over the full ``T×T`` (that is what lmfs computes; a
  causal kernel that skips the masked half does half of that);
* elementwise work, counted per element: RMSNorm 4 per input element (square, sum, scale, gain), RoPE 3 per
  rotated element (2 mul + 1 add), attention scale 1 and softmax 5 per score (max, subtract, exp, sum, divide),
  SiLU 4 + gate 1 per FFN hidden element, residual add 1 per element, cross-entropy 4 per logit (max,
  subtract, exp, sum);
* backward = 2 × forward (both operands of every matmul need a gradient, as lmfs's backward computes them).

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls only; :attr:`FlopCount.matmul` is the number to
compare with it (exactly equal), :attr:`FlopCount.total` adds the elementwise work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RMSNORM_PER_ELEM = 4
ROPE_PER_ELEM = 3
SCALE_PER_SCORE = 1
SOFTMAX_PER_SCORE = 5
SILU_PER_ELEM = 4
GATE_PER_ELEM = 1
RESIDUAL_PER_ELEM = 1
XENT_PER_LOGIT = 4
BACKWARD_FACTOR = 2.0

MATMUL_KEYS = ("qkv_proj", "attn_scores", "attn_values", "output_proj", "ffn", "lm_head")


@dataclass(frozen=True)
class ModelShape:
    """The shape of a Transformer LM; field names follow ``lmfs.nn.TransformerConfig``."""

    vocab_size: int
    context_length: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    num_kv_heads: int | None = None
    tie_embeddings: bool = False
    ffn: str = "swiglu"  #: "swiglu" (w1, w2, w3) or "silu" (w1, w2)
    norm: str = "pre"  #: "pre" (2 per block + final), "post" (2 per block), "none"
    position: str = "rope"  #: "rope" or "none"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelShape.{name} must be a positive int, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(
                f"ModelShape: d_model {self.d_model} is not divisible by num_heads {self.num_heads}"
            )
        if self.num_heads % self.kv_heads:
            raise ValueError(
                f"ModelShape: num_heads {self.num_heads} is not a multiple of num_kv_heads {self.kv_heads}"
            )
        if self.ffn not in ("swiglu", "silu") or self.norm not in ("pre", "post", "none"):
            raise ValueError(f"ModelShape: unknown ffn {self.ffn!r} or norm {self.norm!r}")

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From an ``lmfs.nn.TransformerConfig`` (or anything with the same attributes)."""
        return cls(
            vocab_size=config.vocab_size,
            context_length=config.context_length,
            d_model=config.d_model,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            d_ff=config.d_ff,
            num_kv_heads=getattr(config, "num_kv_heads", None),
            tie_embeddings=bool(getattr(config, "tie_embeddings", False)),
            ffn=getattr(config, "ffn", "swiglu"),
            norm=getattr(config, "norm", "pre"),
            position=getattr(config, "position", "rope"),
        )

    @property
    def d_head(self) -> int:
        return self.d_model // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def ffn_mats(self) -> int:
        return 3 if self.ffn == "swiglu" else 2

    @property
    def norms_per_block(self) -> int:
        return 0 if self.norm == "none" else 2


# ------------------------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts by part. ``non_embedding`` = blocks + final norm (no token embedding, no lm_head)."""

    embedding: int
    attention: int  #: all blocks
    ffn: int  #: all blocks
    norms: int  #: all blocks + final
    lm_head: int  #: 0 when tied
    total: int
    non_embedding: int
    rule_12ld2: int  #: the 12·L·d² rule of thumb for non-embedding parameters

    @property
    def rule_error(self) -> float:
        """Relative error of 12·L·d² against the exact non-embedding count."""
        return self.rule_12ld2 / self.non_embedding - 1.0


def param_count(shape: ModelShape) -> ParamCount:
    """Exact parameter counts of ``lmfs.nn.TransformerLM`` with this shape."""
    s = shape
    d, L = s.d_model, s.num_layers
    emb = s.vocab_size * d
    attn = L * (d * (s.num_heads + 2 * s.kv_heads) * s.d_head + s.num_heads * s.d_head * d)
    ffn = L * s.ffn_mats * d * s.d_ff
    norms = L * s.norms_per_block * d + (d if s.norm == "pre" else 0)
    head = 0 if s.tie_embeddings else s.vocab_size * d
    non_emb = attn + ffn + norms
    return ParamCount(
        embedding=emb,
        attention=attn,
        ffn=ffn,
        norms=norms,
        lm_head=head,
        total=emb + non_emb + head,
        non_embedding=non_emb,
        rule_12ld2=12 * L * d * d,
    )


# ------------------------------------------------------------------------------------------------ FLOPs


@dataclass(frozen=True)
class FlopCount:
    """Forward FLOPs by component for one batch; ``matmul`` is what FlopCounterMode sees."""

    components: dict[str, float]
    tokens: int  #: B·T

    @property
    def matmul(self) -> float:
        return float(sum(self.components[k] for k in MATMUL_KEYS))

    @property
    def total(self) -> float:
        return float(sum(self.components.values()))

    @property
    def per_token(self) -> float:
        return self.total / self.tokens


def forward_flops(
    shape: ModelShape, batch_size: int, seq_len: int | None = None, *, include_loss: bool = True
) -> FlopCount:
    """Forward FLOPs of one batch ``(batch_size, seq_len)`` (default ``seq_len = context_length``)."""
    s = shape
    T = s.context_length if seq_len is None else seq_len
    if batch_size <= 0 or T <= 0:
        raise ValueError(f"forward_flops: batch_size and seq_len must be positive, got {batch_size}, {T}")
    BT, L, d, dh = batch_size * T, s.num_layers, s.d_model, s.d_head
    H, Hkv = s.num_heads, s.kv_heads
    scores = batch_size * H * T * T  # elements of the score matrix, per layer
    n_norms = L * s.norms_per_block + (1 if s.norm == "pre" else 0)
    c = {
        "qkv_proj": L * 2.0 * BT * d * (H + 2 * Hkv) * dh,
        "attn_scores": L * 2.0 * scores * dh,
        "attn_values": L * 2.0 * scores * dh,
        "output_proj": L * 2.0 * BT * H * dh * d,
        "ffn": L * 2.0 * BT * d * s.d_ff * s.ffn_mats,
        "lm_head": 2.0 * BT * d * s.vocab_size,
        "softmax": L * float(SCALE_PER_SCORE + SOFTMAX_PER_SCORE) * scores,
        "norms": float(RMSNORM_PER_ELEM) * n_norms * BT * d,
        "rope": (L * float(ROPE_PER_ELEM) * BT * (H + Hkv) * dh) if s.position == "rope" else 0.0,
        "activation": L * float(SILU_PER_ELEM + (GATE_PER_ELEM if s.ffn == "swiglu" else 0)) * BT * s.d_ff,
        "residual": L * 2.0 * RESIDUAL_PER_ELEM * BT * d,
        "loss": float(XENT_PER_LOGIT) * BT * s.vocab_size if include_loss else 0.0,
    }
    return FlopCount(components=c, tokens=BT)


def training_step_flops(shape: ModelShape, batch_size: int, seq_len: int | None = None) -> float:
    """Forward + backward FLOPs of one step (backward = 2 × forward), elementwise work included."""
    return (1.0 + BACKWARD_FACTOR) * forward_flops(shape, batch_size, seq_len).total


def training_flops_per_token(shape: ModelShape, seq_len: int | None = None) -> float:
    """Training FLOPs per token at sequence length ``seq_len`` (default the context length)."""
    return training_step_flops(shape, 1, seq_len) / (shape.context_length if seq_len is None else seq_len)


def six_nd_comparison(shape: ModelShape, n_tokens: float, seq_len: int | None = None) -> dict[str, float]:
    """The 6·N·D approximation against the exact count for ``n_tokens`` training tokens.

    Returns the exact FLOPs, 6·N·D for N = total / non-embedding / non-embedding + lm_head parameters, and
    each one's relative error (approx/exact − 1). Kaplan et al.'s ``6N + 12·L·T·d`` (attention term) is
    included for N = non-embedding + lm_head.
    """
    p = param_count(shape)
    T = shape.context_length if seq_len is None else seq_len
    exact = training_flops_per_token(shape, T) * n_tokens
    approx = {
        "six_nd_total": 6.0 * p.total * n_tokens,
        "six_nd_non_embedding": 6.0 * p.non_embedding * n_tokens,
        "six_nd_with_head": 6.0 * (p.non_embedding + shape.vocab_size * shape.d_model) * n_tokens,
        "kaplan": (
            6.0 * (p.non_embedding + shape.vocab_size * shape.d_model)
            + 12.0 * shape.num_layers * T * shape.d_model
        )
        * n_tokens,
    }
    out: dict[str, float] = {"exact": exact}
    for k, v in approx.items():
        out[k] = v
        out[k + "_error"] = v / exact - 1.0
    return out


# ----------------------------------------------------------------------------------------------- memory

#: Tensors lmfs's autograd keeps per block, found with torch.autograd.graph.saved_tensors_hooks on
#: lmfs.nn.TransformerLM (tests/scaling/test_accounting.py checks the estimate against that measurement):
#: each RMSNorm keeps its input, the normalised input and 1/rms per row; the QKV projection, Q·Kᵀ (Q, K), P·V
#: (V), the output projection and the FFN keep their inputs (K and V at num_heads heads, after GQA's repeat);
#: softmax keeps only its output P (a hand-written backward); the cross-entropy keeps the logits and a
#: logsumexp per row.
ACT_PER_BLOCK_D = 6  #: QKV input, Q, K, V, attention output, FFN input (plus 2 per RMSNorm)
ACT_PER_NORM_D = 2
ACT_PER_BLOCK_FF = {"swiglu": 5, "silu": 3}  #: w1 out, σ(w1 out), [w3 out, product,] w2 input
ACT_PER_BLOCK_SCORES = 1  #: the softmax output P (its backward and P·V's both use it)
ACT_PER_BLOCK_SCORE_ROWS = 0  #: per-row softmax statistics kept (none: the backward uses P alone)
ACT_FINAL_V = 1  #: the logits (the cross-entropy's backward recomputes softmax from them)
ACT_FINAL_ROWS = 1  #: the cross-entropy's logsumexp per row


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes for one training step: weights, gradients, AdamW moments, activations saved for backward."""

    params: int
    grads: int
    optimizer: int  #: AdamW: two moments per parameter
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer + self.activations

    def as_dict(self) -> dict[str, int]:
        return {
            "params": self.params,
            "grads": self.grads,
            "optimizer": self.optimizer,
            "activations": self.activations,
            "total": self.total,
        }


def activation_bytes(
    shape: ModelShape, batch_size: int, seq_len: int | None = None, bytes_per: int = 4
) -> int:
    """Estimated bytes of the tensors autograd saves for backward in one forward pass + loss (naive
    attention; activations of ``bytes_per`` bytes, token ids int64, the causal mask bool)."""
    s = shape
    T = s.context_length if seq_len is None else seq_len
    BT = batch_size * T
    n_norms = s.norms_per_block
    per_block = BT * (
        (ACT_PER_BLOCK_D + ACT_PER_NORM_D * n_norms) * s.d_model + ACT_PER_BLOCK_FF[s.ffn] * s.d_ff + n_norms
    ) + batch_size * s.num_heads * T * (ACT_PER_BLOCK_SCORES * T + ACT_PER_BLOCK_SCORE_ROWS)
    final_norm = 1 if s.norm == "pre" else 0
    final = BT * (
        (1 + ACT_PER_NORM_D * final_norm) * s.d_model
        + final_norm
        + ACT_FINAL_V * s.vocab_size
        + ACT_FINAL_ROWS
    )
    return bytes_per * (s.num_layers * per_block + final) + 8 * BT + s.num_layers * T * T


def memory_estimate(
    shape: ModelShape,
    batch_size: int,
    seq_len: int | None = None,
    *,
    param_bytes: int = 4,
    act_bytes: int = 4,
    optimizer_states: int = 2,
) -> MemoryEstimate:
    """Weights + grads + AdamW state + activations of one step (fp32 by default)."""
    n = param_count(shape).total
    return MemoryEstimate(
        params=param_bytes * n,
        grads=param_bytes * n,
        optimizer=4 * optimizer_states * n,
        activations=activation_bytes(shape, batch_size, seq_len, act_bytes),
    )
