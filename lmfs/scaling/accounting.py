"""Parameters, FLOPs and memory of lmfs's Transformer LM, by arithmetic on its
:class:`~lmfs.nn.config.TransformerConfig` (no torch needed). The one home of the model's cost formulas: the
exact counts below, and the rules of thumb (``12·L·d²`` parameters, ``6·N + 12·L·d·T`` FLOPs per token) that
MFU figures and quick estimates use.

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmfs.nn.config import TransformerConfig

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


def _ffn_mats(config: TransformerConfig) -> int:
    """Weight matrices per FFN: SwiGLU has w1, w2, w3; the SiLU FFN w1, w2."""
    return 3 if config.ffn == "swiglu" else 2


def _norms_per_block(config: TransformerConfig) -> int:
    """RMSNorms per block: 2 for pre- and post-norm, none for "none" (pre-norm adds a final one)."""
    return 0 if config.norm == "none" else 2


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


def param_count(config: TransformerConfig) -> ParamCount:
    """Exact parameter counts of ``lmfs.nn.TransformerLM(config)`` (what its ``count_parameters`` reports)."""
    s = config
    d, L = s.d_model, s.num_layers
    emb = s.vocab_size * d
    attn = L * (d * (s.num_heads + 2 * s.kv_heads) * s.d_head + s.num_heads * s.d_head * d)
    ffn = L * _ffn_mats(s) * d * s.d_ff
    norms = L * _norms_per_block(s) * d + (d if s.norm == "pre" else 0)
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
        rule_12ld2=rule_of_thumb_params(d, L),
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
    config: TransformerConfig, batch_size: int, seq_len: int | None = None, *, include_loss: bool = True
) -> FlopCount:
    """Forward FLOPs of one batch ``(batch_size, seq_len)`` (default ``seq_len = context_length``)."""
    s = config
    T = s.context_length if seq_len is None else seq_len
    if batch_size <= 0 or T <= 0:
        raise ValueError(f"forward_flops: batch_size and seq_len must be positive, got {batch_size}, {T}")
    BT, L, d, dh = batch_size * T, s.num_layers, s.d_model, s.d_head
    H, Hkv = s.num_heads, s.kv_heads
    scores = batch_size * H * T * T  # elements of the score matrix, per layer
    n_norms = L * _norms_per_block(s) + (1 if s.norm == "pre" else 0)
    c = {
        "qkv_proj": L * 2.0 * BT * d * (H + 2 * Hkv) * dh,
        "attn_scores": L * 2.0 * scores * dh,
        "attn_values": L * 2.0 * scores * dh,
        "output_proj": L * 2.0 * BT * H * dh * d,
        "ffn": L * 2.0 * BT * d * s.d_ff * _ffn_mats(s),
        "lm_head": 2.0 * BT * d * s.vocab_size,
        "softmax": L * float(SCALE_PER_SCORE + SOFTMAX_PER_SCORE) * scores,
        "norms": float(RMSNORM_PER_ELEM) * n_norms * BT * d,
        "rope": (L * float(ROPE_PER_ELEM) * BT * (H + Hkv) * dh) if s.position == "rope" else 0.0,
        "activation": L * float(SILU_PER_ELEM + (GATE_PER_ELEM if s.ffn == "swiglu" else 0)) * BT * s.d_ff,
        "residual": L * 2.0 * RESIDUAL_PER_ELEM * BT * d,
        "loss": float(XENT_PER_LOGIT) * BT * s.vocab_size if include_loss else 0.0,
    }
    return FlopCount(components=c, tokens=BT)


def training_step_flops(config: TransformerConfig, batch_size: int, seq_len: int | None = None) -> float:
    """Forward + backward FLOPs of one step (backward = 2 × forward), elementwise work included."""
    return (1.0 + BACKWARD_FACTOR) * forward_flops(config, batch_size, seq_len).total


def training_flops_per_token(config: TransformerConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token at sequence length ``seq_len`` (default the context length)."""
    return training_step_flops(config, 1, seq_len) / (config.context_length if seq_len is None else seq_len)


# ------------------------------------------------------------------------------------ rules of thumb


def rule_of_thumb_params(d_model: int, num_layers: int) -> int:
    """``12·L·d²``: the usual estimate of the non-embedding parameters (4·d² attention + 8·d² FFN per block)."""
    return 12 * num_layers * d_model * d_model


def matmul_params(config: TransformerConfig) -> int:
    """The weights every token is multiplied by: attention and FFN of all blocks, plus the ``d×V`` output
    projection (counted even when tied to the embedding); no norms, no embedding lookup."""
    p = param_count(config)
    return p.attention + p.ffn + config.vocab_size * config.d_model


def kaplan_flops_per_token(
    config: TransformerConfig, seq_len: int | None = None, *, n_params: int | None = None
) -> float:
    """``6·N + 12·L·d·T`` training FLOPs per token (Kaplan et al. 2020; the usual MFU convention): ``6·N`` for
    the matmuls forward and backward, ``12·L·d·T`` for the attention scores. ``N`` defaults to
    :func:`matmul_params`; ``T`` to the context length."""
    T = config.context_length if seq_len is None else seq_len
    n = matmul_params(config) if n_params is None else n_params
    return 6.0 * n + 12.0 * config.num_layers * config.d_model * T


def six_nd_comparison(
    config: TransformerConfig, n_tokens: float, seq_len: int | None = None
) -> dict[str, float]:
    """The 6·N·D approximation against the exact count for ``n_tokens`` training tokens.

    Returns the exact FLOPs, 6·N·D for N = total / non-embedding / non-embedding + lm_head parameters, and
    each one's relative error (approx/exact − 1). Kaplan et al.'s ``6N + 12·L·T·d`` (attention term,
    :func:`kaplan_flops_per_token`) is included for N = non-embedding + lm_head.
    """
    p = param_count(config)
    T = config.context_length if seq_len is None else seq_len
    exact = training_flops_per_token(config, T) * n_tokens
    with_head = p.non_embedding + config.vocab_size * config.d_model
    approx = {
        "six_nd_total": 6.0 * p.total * n_tokens,
        "six_nd_non_embedding": 6.0 * p.non_embedding * n_tokens,
        "six_nd_with_head": 6.0 * with_head * n_tokens,
        "kaplan": kaplan_flops_per_token(config, T, n_params=with_head) * n_tokens,
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
    config: TransformerConfig, batch_size: int, seq_len: int | None = None, bytes_per: int = 4
) -> int:
    """Estimated bytes of the tensors autograd saves for backward in one forward pass + loss (naive
    attention; activations of ``bytes_per`` bytes, token ids int64, the causal mask bool)."""
    s = config
    T = s.context_length if seq_len is None else seq_len
    BT = batch_size * T
    n_norms = _norms_per_block(s)
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
    config: TransformerConfig,
    batch_size: int,
    seq_len: int | None = None,
    *,
    param_bytes: int = 4,
    act_bytes: int = 4,
    optimizer_states: int = 2,
) -> MemoryEstimate:
    """Weights + grads + AdamW state + activations of one step (fp32 by default)."""
    n = param_count(config).total
    return MemoryEstimate(
        params=param_bytes * n,
        grads=param_bytes * n,
        optimizer=4 * optimizer_states * n,
        activations=activation_bytes(config, batch_size, seq_len, act_bytes),
    )
