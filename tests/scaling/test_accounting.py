"""The accounting against lmfs's own model: parameter counts, FlopCounterMode, saved activations."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lmfs.nn import PRESETS, TransformerConfig, TransformerLM, count_parameters, cross_entropy, preset
from lmfs.scaling.accounting import (
    activation_bytes,
    forward_flops,
    kaplan_flops_per_token,
    matmul_params,
    memory_estimate,
    param_count,
    six_nd_comparison,
    training_step_flops,
)

CONFIGS = [
    dict(vocab_size=97, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=48),
    dict(
        vocab_size=50,
        context_length=12,
        d_model=24,
        num_layers=3,
        num_heads=6,
        d_ff=40,
        num_kv_heads=2,
        tie_embeddings=True,
    ),
    dict(vocab_size=64, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=64, ffn="silu"),
    dict(vocab_size=64, context_length=10, d_model=16, num_layers=2, num_heads=2, d_ff=32, norm="post"),
]


def _model(kw: dict) -> tuple[TransformerLM, TransformerConfig]:
    torch.manual_seed(0)
    cfg = TransformerConfig(**kw)
    return TransformerLM(cfg), cfg


@pytest.mark.parametrize("kw", CONFIGS)
def test_param_count_matches_model(kw):
    model, shape = _model(kw)
    p = param_count(shape)
    assert p.total == sum(t.numel() for t in model.parameters())
    assert p.non_embedding == model.num_parameters(non_embedding=True)


@pytest.mark.parametrize("kw", CONFIGS)
def test_matmul_flops_match_flop_counter(kw):
    model, shape = _model(kw)
    B, T = 3, kw["context_length"] - 2
    x = torch.randint(0, kw["vocab_size"], (B, T))
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            model(x)
    with FlopCounterMode(display=False) as both:
        cross_entropy(model(x), x).backward()
    count = forward_flops(shape, B, T)
    assert count.matmul == fwd.get_total_flops()
    assert 3 * count.matmul == both.get_total_flops()  # backward = 2 × forward, as the accounting assumes
    assert training_step_flops(shape, B, T) == pytest.approx(3 * count.total)
    assert count.total > count.matmul


@pytest.mark.parametrize("kw", CONFIGS)
def test_activation_estimate_matches_saved_tensors(kw):
    """Sum of the distinct storages autograd saves (parameters excluded) in one forward + loss."""
    model, shape = _model(kw)
    B, T = 3, kw["context_length"] - 1
    x = torch.randint(0, kw["vocab_size"], (B, T))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in params and st.nbytes():
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        cross_entropy(model(x), x)
    measured = sum(seen.values())
    # the constants in lmfs.scaling.accounting track what lmfs.nn saves: update them when it changes
    assert activation_bytes(shape, B, T) == pytest.approx(measured, rel=0.05)


def test_rule_of_thumb_and_six_nd():
    shape = TransformerConfig(
        vocab_size=50_257,
        context_length=1024,
        d_model=1600,
        num_layers=48,
        num_heads=25,
        d_ff=6400,
        ffn="silu",
    )  # GPT-2 XL-like: 12·L·d² is exact up to the norms
    p = param_count(shape)
    assert abs(p.rule_error) < 1e-3
    cmp = six_nd_comparison(shape, 1e9)
    # 6·N·D with the matmul parameters (blocks + lm_head) misses the attention scores (T=1024 here): too low
    assert -0.12 < cmp["six_nd_with_head_error"] < -0.05
    assert abs(cmp["kaplan_error"]) < 0.01  # Kaplan's 12·L·T·d term restores them
    assert cmp["six_nd_total"] - cmp["six_nd_with_head"] == pytest.approx(6 * 50_257 * 1600 * 1e9)


def test_memory_estimate_adamw():
    shape = TransformerConfig(
        vocab_size=100, context_length=8, d_model=16, num_layers=1, num_heads=2, d_ff=32
    )
    m = memory_estimate(shape, 2)
    n = param_count(shape).total
    assert (m.params, m.grads, m.optimizer) == (4 * n, 4 * n, 8 * n)
    assert m.total == m.params + m.grads + m.optimizer + m.activations


def test_shape_validation_is_transformer_configs():
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(vocab_size=10, context_length=8, d_model=30, num_layers=1, num_heads=4, d_ff=8)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_count_parameters_agrees_with_param_count(name):
    """The torch model's own counts (count_parameters, num_parameters) are the accounting's."""
    cfg = preset(name, context_length=64)
    model = TransformerLM(cfg, device="meta")
    p = param_count(cfg)
    assert count_parameters(model) == {"total": p.total, "non_embedding": p.non_embedding}
    assert model.num_parameters() == p.total and model.num_parameters(non_embedding=True) == p.non_embedding


def test_kaplan_flops_per_token_is_the_mfu_convention():
    """6·N + 12·L·d·T with N = the matmul weights (attention, FFN, d×V output projection; no norms)."""
    cfg = preset("smollm2-135m")  # GQA and tied embeddings: the d×V projection still counts
    d, L, T, V, H, kv, dh, dff = 576, 30, 8192, 49152, 9, 3, 64, 1536
    n = L * (d * (H + 2 * kv) * dh + d * d + 3 * d * dff) + d * V
    assert matmul_params(cfg) == n
    assert kaplan_flops_per_token(cfg) == 6.0 * n + 12.0 * L * d * T
    assert kaplan_flops_per_token(cfg, 100, n_params=10) == 60.0 + 12.0 * L * d * 100
