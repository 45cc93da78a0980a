"""lmfs.nn internals the specs don't reach: init, config validation, ablations, GQA, tying, the attention seam."""

from __future__ import annotations

import math

import pytest
import torch

from lmfs.nn import (
    Embedding,
    Linear,
    MultiHeadSelfAttention,
    RMSNorm,
    RotaryEmbedding,
    TransformerConfig,
    TransformerLM,
    causal_attention,
    count_parameters,
    cross_entropy,
    default_d_ff,
    fuse_qkv,
    load_cs336_state_dict,
    scaled_dot_product_attention,
    split_qkv,
    swiglu_hidden_dim,
    trunc_normal_,
)
from lmfs.nn.transformer import NoNorm

TRUNC3_STD = 0.986582  # std of N(0, 1) truncated to ±3


def tiny(**overrides) -> TransformerConfig:
    base = dict(vocab_size=53, context_length=16, d_model=16, num_layers=2, num_heads=4, d_ff=24)
    return TransformerConfig(**{**base, **overrides})


# ----------------------------------------------------------------------------------------------- init


def test_trunc_normal_bounds_and_moments():
    torch.manual_seed(0)
    x = trunc_normal_(torch.empty(200_000), std=2.0, a=-6.0, b=6.0)
    assert x.min() >= -6.0 and x.max() <= 6.0
    assert abs(x.mean().item()) < 0.02
    assert x.std().item() == pytest.approx(2.0 * TRUNC3_STD, rel=0.01)


def test_trunc_normal_asymmetric_bounds():
    x = trunc_normal_(torch.empty(50_000), std=1.0, a=0.0, b=1.0)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.mean().item() == pytest.approx(0.4599, abs=0.01)  # E[Z | 0 ≤ Z ≤ 1] = (φ(0) − φ(1)) / (Φ(1) − ½)


def test_linear_and_embedding_init():
    torch.manual_seed(0)
    lin = Linear(300, 500)
    sigma = math.sqrt(2 / 800)
    assert lin.weight.shape == (500, 300)
    assert lin.weight.abs().max() <= 3 * sigma + 1e-7
    assert lin.weight.std().item() == pytest.approx(sigma * TRUNC3_STD, rel=0.02)
    emb = Embedding(1000, 64)
    assert emb.weight.abs().max() <= 3.0
    assert emb.weight.std().item() == pytest.approx(TRUNC3_STD, rel=0.02)
    assert torch.equal(RMSNorm(7).weight, torch.ones(7))


def test_dtype_and_device_arguments():
    lin = Linear(4, 3, device="cpu", dtype=torch.float64)
    assert lin.weight.dtype == torch.float64
    model = TransformerLM(tiny(), dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model(torch.randint(0, 53, (1, 8))).dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(("d_model", "expected"), [(512, 1344), (768, 2048), (64, 192), (16, 64)])
def test_swiglu_hidden_dim(d_model, expected):
    assert swiglu_hidden_dim(d_model) == expected
    assert expected % 64 == 0


def test_default_d_ff_for_silu_is_4x():
    assert default_d_ff(256, "silu") == 1024 and default_d_ff(768) == 2048


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (dict(d_model=18), "divisible by num_heads"),
        (dict(num_kv_heads=3), "num_kv_heads"),
        (dict(norm="layer"), "norm must be one of"),
        (dict(position="alibi"), "position must be one of"),
        (dict(ffn="gelu"), "ffn must be one of"),
        (dict(num_layers=0), "num_layers must be a positive integer"),
        (dict(d_model=12, num_heads=4), "even head dim"),
    ],
)
def test_config_errors_name_the_problem(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny(**overrides)


def test_config_from_dict_rejects_unknown_keys_and_roundtrips():
    cfg = tiny(num_kv_heads=2, tie_embeddings=True)
    assert TransformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys \\['d_modle'\\]"):
        TransformerConfig.from_dict({**cfg.to_dict(), "d_modle": 3})


# ----------------------------------------------------------------------------------------------- model


def test_parameter_count_matches_formula():
    cfg = tiny(num_kv_heads=2)
    V, d, L, dff, dh = 53, 16, 2, 24, 4
    per_layer = d * (4 + 2 * 2) * dh + d * d + 3 * d * dff + 2 * d
    expected = V * d + L * per_layer + d + V * d
    model = TransformerLM(cfg)
    assert count_parameters(model) == {"total": expected, "non_embedding": expected - 2 * V * d}


def test_tied_embeddings_share_one_tensor():
    model = TransformerLM(tiny(tie_embeddings=True))
    assert model.lm_head.weight is model.token_embeddings.weight
    assert model.num_parameters() == TransformerLM(tiny()).num_parameters() - 53 * 16
    model(torch.randint(0, 53, (2, 5))).sum().backward()
    assert model.token_embeddings.weight.grad is not None


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(norm="post"),
        dict(norm="none"),
        dict(position="none"),
        dict(ffn="silu", d_ff=64),
        dict(num_kv_heads=1),
        dict(tie_embeddings=True),
    ],
)
def test_ablations_train(overrides):
    """Every switch builds, runs forward/backward with gradients everywhere, and a few AdamW steps lower the loss."""
    from lmfs.optim import AdamW

    torch.manual_seed(0)
    model = TransformerLM(tiny(**overrides))
    ids = torch.randint(0, 53, (4, 16))
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = cross_entropy(model(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_ablation_structure():
    assert not any(isinstance(m, RMSNorm) for m in TransformerLM(tiny(norm="none")).modules())
    post = TransformerLM(tiny(norm="post"))
    assert isinstance(post.ln_final, NoNorm) and isinstance(post.layers[0].ln1, RMSNorm)
    assert not hasattr(TransformerLM(tiny(ffn="silu")).layers[0].ffn, "w3")
    assert TransformerLM(tiny(position="none")).rope is None


def test_nope_one_layer_last_position_ignores_order_of_earlier_tokens():
    """Without positions, causal attention at the last query sees a *set* of keys: permuting the earlier tokens of
    a one-layer model leaves the last logits unchanged; with RoPE it does not."""
    ids = torch.tensor([[3, 9, 27, 4, 11, 8]])
    perm = torch.tensor([[27, 3, 11, 9, 4, 8]])
    for position, same in (("none", True), ("rope", False)):
        torch.manual_seed(1)
        model = TransformerLM(tiny(num_layers=1, position=position))
        with torch.no_grad():
            a, b = model(ids)[0, -1], model(perm)[0, -1]
        assert torch.allclose(a, b, atol=1e-5) is same


def test_post_norm_outputs_are_normalized():
    model = TransformerLM(tiny(norm="post"))
    captured = {}
    model.layers[-1].register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    model(torch.randint(0, 53, (2, 7)))
    rms = captured["h"].pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), rtol=1e-3, atol=1e-3)  # gains start at 1


def test_input_longer_than_context_is_a_clear_error():
    with pytest.raises(ValueError, match="context_length is 16"):
        TransformerLM(tiny())(torch.zeros(1, 17, dtype=torch.long))


def test_token_positions_override_default():
    torch.manual_seed(0)
    model = TransformerLM(tiny())
    ids = torch.randint(0, 53, (1, 6))
    with torch.no_grad():
        default = model(ids)
        explicit = model(ids, torch.arange(6))
        shifted = model(ids, torch.arange(6) + 3)
        spread = model(ids, torch.arange(6) * 2)
    torch.testing.assert_close(default, explicit)
    torch.testing.assert_close(default, shifted, rtol=1e-4, atol=1e-4)  # RoPE sees relative positions only
    assert not torch.allclose(default, spread, atol=1e-4)


# ----------------------------------------------------------------------------------------------- attention


def test_gqa_equals_mha_with_repeated_kv_heads():
    torch.manual_seed(0)
    d, h, kv, T = 16, 4, 2, 7
    rope = RotaryEmbedding(10000.0, d // h, 16)
    gqa = MultiHeadSelfAttention(d, h, kv, rope=rope)
    mha = MultiHeadSelfAttention(d, h, rope=rope)
    wq, wk, wv = gqa.qkv_proj.weight.split((h * 4, kv * 4, kv * 4))
    rep = lambda w: w.view(kv, 4, d).repeat_interleave(h // kv, dim=0).reshape(h * 4, d)
    with torch.no_grad():
        mha.qkv_proj.weight.copy_(torch.cat([wq, rep(wk), rep(wv)]))
        mha.output_proj.weight.copy_(gqa.output_proj.weight)
    x = torch.randn(2, T, d)
    torch.testing.assert_close(gqa(x), mha(x))


def test_attention_fn_seam_receives_bhtd_and_is_used():
    calls = []

    def spy(q, k, v, *, is_causal, mask=None, scale=None):
        calls.append((q.shape, k.shape, is_causal))
        return causal_attention(q, k, v, is_causal, mask=mask, scale=scale) * 0.0

    model = TransformerLM(tiny(num_kv_heads=2))
    ids = torch.randint(0, 53, (3, 9))
    before = model(ids)
    model.set_attention_fn(spy)
    after = model(ids)
    assert calls == [(torch.Size([3, 4, 9, 4]), torch.Size([3, 4, 9, 4]), True)] * 2
    assert not torch.allclose(before, after)


def test_causal_attention_with_more_keys_than_queries_aligns_to_the_end():
    q, k, v = torch.randn(1, 2, 8, 4), torch.randn(1, 2, 8, 4), torch.randn(1, 2, 8, 4)
    full = causal_attention(q, k, v, True)
    torch.testing.assert_close(causal_attention(q[..., 5:, :], k, v, True), full[..., 5:, :])


def test_sdpa_rejects_non_bool_masks():
    with pytest.raises(TypeError, match="bool"):
        scaled_dot_product_attention(
            torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), torch.ones(2, 2)
        )


def test_rope_rejects_odd_dim_and_long_sequences():
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(10000.0, 5, 8)
    with pytest.raises(ValueError, match="max_seq_len 8"):
        RotaryEmbedding(10000.0, 4, 8)(torch.randn(1, 9, 4))


# ----------------------------------------------------------------------------------------------- state dicts


def test_fuse_and_split_qkv_are_inverse():
    cfg = tiny(num_kv_heads=2)
    sd = TransformerLM(cfg).state_dict()
    cs336 = split_qkv(sd, cfg.num_heads, cfg.num_kv_heads)
    assert "layers.1.attn.k_proj.weight" in cs336 and "layers.1.attn.qkv_proj.weight" not in cs336
    assert cs336["layers.0.attn.k_proj.weight"].shape == (8, 16)
    back = fuse_qkv(cs336)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_load_cs336_state_dict_round_trip_and_errors():
    cfg = tiny()
    src, dst = TransformerLM(cfg), TransformerLM(cfg)
    load_cs336_state_dict(dst, split_qkv(src.state_dict(), cfg.num_heads))
    ids = torch.randint(0, 53, (2, 8))
    torch.testing.assert_close(dst(ids), src(ids))
    partial = split_qkv(src.state_dict(), cfg.num_heads)
    del partial["ln_final.weight"]
    with pytest.raises(KeyError, match=r"ln_final\.weight"):
        load_cs336_state_dict(dst, partial)
    del partial["layers.0.attn.v_proj.weight"]
    with pytest.raises(KeyError, match="v_proj"):
        load_cs336_state_dict(dst, partial)


# ----------------------------------------------------------------------------------------------- loss


def test_cross_entropy_bf16_logits_and_shape_errors():
    logits = torch.randn(2, 5, 11)
    targets = torch.randint(0, 11, (2, 5))
    loss = cross_entropy(logits.to(torch.bfloat16), targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, cross_entropy(logits.to(torch.bfloat16).float(), targets))
    with pytest.raises(ValueError, match="targets' shape"):
        cross_entropy(logits, targets[:, :4])


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    logits = torch.randn(6, 9, requires_grad=True)
    targets = torch.randint(0, 9, (6,))
    cross_entropy(logits, targets).backward()
    expected = (torch.softmax(logits.detach(), -1) - torch.nn.functional.one_hot(targets, 9)) / 6
    torch.testing.assert_close(logits.grad, expected)


# ----------------------------------------------------------------------------------------------- hand-written backwards


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_backward_gradcheck(dim):
    from lmfs.nn import softmax

    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: softmax(t, dim), (x,))
    assert torch.autograd.gradgradcheck(lambda t: softmax(t, dim), (x,))


def test_cross_entropy_backward_gradcheck():
    logits = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 7, (2, 3))
    assert torch.autograd.gradcheck(lambda t: cross_entropy(t, targets).double(), (logits,))


def test_grads_match_autograd_of_builtins():
    import torch.nn.functional as F

    from lmfs.nn import softmax

    x = torch.randn(4, 6, 9, requires_grad=True)
    w = torch.randn(4, 6, 9)
    (softmax(x, -1) * w).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    (torch.softmax(x, -1) * w).sum().backward()
    torch.testing.assert_close(ours, x.grad)

    logits = (torch.randn(5, 8, 33) * 30).requires_grad_()
    targets = torch.randint(0, 33, (5, 8))
    cross_entropy(logits, targets).backward()
    ours = logits.grad.clone()
    logits.grad = None
    F.cross_entropy(logits.reshape(-1, 33), targets.reshape(-1)).backward()
    torch.testing.assert_close(ours, logits.grad)


def test_masked_attention_grads_match_builtin():
    """Masked (-inf) scores must give finite gradients equal to F.scaled_dot_product_attention's."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    ours = [torch.randn(2, 6, 4, generator=g).requires_grad_() for _ in range(3)]
    ref = [t.detach().clone().requires_grad_() for t in ours]
    w = torch.randn(2, 6, 4, generator=g)
    (scaled_dot_product_attention(*ours, torch.ones(6, 6, dtype=torch.bool).tril()) * w).sum().backward()
    (F.scaled_dot_product_attention(*ref, is_causal=True) * w).sum().backward()
    for a, b in zip(ours, ref, strict=True):
        assert torch.isfinite(a.grad).all()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)


def test_bf16_cross_entropy_grad_dtype():
    logits = torch.randn(3, 11, dtype=torch.bfloat16, requires_grad=True)
    cross_entropy(logits, torch.tensor([1, 2, 3])).backward()
    assert logits.grad.dtype == torch.bfloat16 and torch.isfinite(logits.grad.float()).all()


def test_presets_and_flops_formula():
    from lmfs.nn import preset
    from lmfs.scaling.accounting import kaplan_flops_per_token

    cfg = preset("cs336-tinystories")
    assert (
        count_parameters(TransformerLM(cfg, device="meta"))["total"] == 22_696_448
    )  # 2·10000·512 + 4·(4·512² + 3·512·1344 + 2·512) + 512
    d, L, V, T, dff = 512, 4, 10000, 256, 1344
    assert kaplan_flops_per_token(cfg) == 6 * (L * (4 * d * d + 3 * d * dff) + d * V) + 12 * L * d * T
    with pytest.raises(KeyError, match="known presets"):
        preset("gpt-5")
    small = preset("small", context_length=512)  # a course size: the caller gives the context
    assert (small.d_model, small.vocab_size, small.context_length) == (768, 10_000, 512)
    with pytest.raises(ValueError, match="context_length"):
        preset("small")
