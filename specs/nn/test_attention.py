"""Specs for softmax, scaled dot-product attention, RoPE and causal multi-head self-attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from specs.nn import reference as ref

SEED = st.integers(0, 2**31 - 1)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- softmax


@pytest.mark.points(2)
def test_softmax_matches_reference_and_builtin(adapter):
    @given(seed=SEED, dim=st.integers(-3, 2))
    def check(seed, dim):
        x = _randn(3, 4, 5, seed=seed) * 5
        out = adapter.run_softmax(x, dim=dim)
        torch.testing.assert_close(out, torch.softmax(x, dim=dim))
        torch.testing.assert_close(out.double(), ref.softmax(x, dim), rtol=1e-5, atol=1e-6)

    check()


@pytest.mark.points(2)
def test_softmax_shift_invariant(adapter):
    """softmax(x + c) = softmax(x) for any constant c along the reduced dim, including huge c."""

    @given(seed=SEED, shift=st.floats(-1e4, 1e4, allow_nan=False))
    def check(seed, shift):
        x = _randn(4, 6, seed=seed)
        torch.testing.assert_close(
            adapter.run_softmax(x + shift, dim=-1), adapter.run_softmax(x, dim=-1), rtol=1e-3, atol=1e-3
        )

    check()


@pytest.mark.points(1)
def test_softmax_stable_for_huge_inputs(adapter):
    x = torch.tensor([[1000.0, 1000.0, -1000.0], [1e30, 0.0, -1e30]])
    out = adapter.run_softmax(x, dim=-1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]))


# ----------------------------------------------------------------------------------------------- SDPA


@pytest.mark.points(3)
def test_sdpa_matches_reference_and_builtin(adapter):
    @given(
        seed=SEED,
        nq=st.integers(1, 9),
        nk=st.integers(1, 9),
        d_k=st.integers(1, 8),
        d_v=st.integers(1, 8),
        use_mask=st.booleans(),
    )
    def check(seed, nq, nk, d_k, d_v, use_mask):
        q, k, v = (
            _randn(2, 3, nq, d_k, seed=seed),
            _randn(2, 3, nk, d_k, seed=seed + 1),
            _randn(2, 3, nk, d_v, seed=seed + 2),
        )
        mask = None
        if use_mask:
            mask = torch.rand(2, 3, nq, nk, generator=torch.Generator().manual_seed(seed)) > 0.4
            mask[..., 0] = True  # no query with nothing to attend to
        out = adapter.run_scaled_dot_product_attention(q, k, v, mask)
        assert out.shape == (2, 3, nq, d_v)
        torch.testing.assert_close(out.double(), ref.sdpa(q, k, v, mask), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), rtol=1e-5, atol=1e-5
        )

    check()


@pytest.mark.points(1)
def test_sdpa_mask_true_means_attend(adapter):
    """With only key j allowed, each query's output is exactly V[j]."""
    q, k, v = _randn(1, 4, 3, seed=1), _randn(1, 5, 3, seed=2), _randn(1, 5, 2, seed=3)
    mask = torch.zeros(1, 4, 5, dtype=torch.bool)
    mask[..., 2] = True
    out = adapter.run_scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, v[:, 2:3, :].expand(1, 4, 2))


# ----------------------------------------------------------------------------------------------- RoPE


@pytest.mark.points(3)
def test_rope_matches_reference(adapter):
    @given(
        seed=SEED,
        d_half=st.integers(1, 8),
        seq=st.integers(1, 12),
        theta=st.sampled_from([10000.0, 500.0, 1e6]),
        per_batch=st.booleans(),
    )
    def check(seed, d_half, seq, theta, per_batch):
        d_k, max_len = 2 * d_half, 32
        x = _randn(2, seq, d_k, seed=seed)
        g = torch.Generator().manual_seed(seed)
        pos = torch.randint(0, max_len, (2, seq) if per_batch else (seq,), generator=g)
        out = adapter.run_rope(d_k, theta, max_len, x, pos)
        assert out.shape == x.shape
        torch.testing.assert_close(out.double(), ref.rope(x, pos, theta), rtol=1e-5, atol=1e-5)

    check()


@pytest.mark.points(1)
def test_rope_rotates_adjacent_pairs(adapter):
    """A unit vector on dim 0 at position p moves into dims (0, 1) only, as (cos p, sin p)."""
    d_k, p = 8, 3
    x = torch.zeros(1, 1, d_k)
    x[..., 0] = 1.0
    out = adapter.run_rope(d_k, 10000.0, 16, x, torch.tensor([p]))
    expected = torch.zeros(1, 1, d_k)
    expected[..., 0], expected[..., 1] = torch.cos(torch.tensor(3.0)), torch.sin(torch.tensor(3.0))
    torch.testing.assert_close(out, expected)


@pytest.mark.points(2)
def test_rope_dot_product_depends_only_on_relative_position(adapter):
    """⟨R(m) q, R(n) k⟩ = ⟨R(m+s) q, R(n+s) k⟩ for any shift s."""

    @given(seed=SEED, m=st.integers(0, 40), n=st.integers(0, 40), s=st.integers(0, 20))
    def check(seed, m, n, s):
        d_k = 16
        q, k = _randn(1, 1, d_k, seed=seed), _randn(1, 1, d_k, seed=seed + 1)
        rot = lambda x, p: adapter.run_rope(d_k, 10000.0, 64, x, torch.tensor([p]))
        a = (rot(q, m) * rot(k, n)).sum()
        b = (rot(q, m + s) * rot(k, n + s)).sum()
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

    check()


@pytest.mark.points(1)
def test_rope_preserves_norm(adapter):
    x = _randn(3, 10, 12, seed=7)
    out = adapter.run_rope(12, 10000.0, 10, x, torch.arange(10))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


# ----------------------------------------------------------------------------------------------- MHSA


def _mha_weights(d_model: int, seed: int) -> list[torch.Tensor]:
    return [_randn(d_model, d_model, seed=seed + i) * d_model**-0.5 for i in range(4)]


@pytest.mark.points(3)
def test_mha_matches_reference(adapter):
    @given(
        seed=SEED, heads=st.sampled_from([1, 2, 4]), d_head=st.sampled_from([2, 4]), seq=st.integers(1, 10)
    )
    def check(seed, heads, d_head, seq):
        d_model = heads * d_head
        wq, wk, wv, wo = _mha_weights(d_model, seed)
        x = _randn(2, seq, d_model, seed=seed + 9)
        out = adapter.run_multihead_self_attention(d_model, heads, wq, wk, wv, wo, x)
        assert out.shape == x.shape
        torch.testing.assert_close(out.double(), ref.mha(wq, wk, wv, wo, x, heads), rtol=1e-4, atol=1e-5)

    check()


@pytest.mark.points(3)
def test_mha_with_rope_matches_reference(adapter):
    @given(
        seed=SEED,
        heads=st.sampled_from([1, 2, 4]),
        d_head=st.sampled_from([2, 4, 8]),
        seq=st.integers(1, 10),
        offsets=st.lists(st.integers(0, 5), min_size=2, max_size=2),
        pos_shape=st.sampled_from(["(seq,)", "(1, seq)", "(batch, seq)"]),
        theta=st.sampled_from([10000.0, 100.0]),
    )
    def check(seed, heads, d_head, seq, offsets, pos_shape, theta):
        d_model = heads * d_head
        wq, wk, wv, wo = _mha_weights(d_model, seed)
        x = _randn(2, seq, d_model, seed=seed + 9)
        pos = {
            "(seq,)": torch.arange(seq) + offsets[0],
            # RoPE only sees relative positions: strides other than 1 make the positions observable
            "(1, seq)": torch.arange(seq)[None] * 2 + offsets[0],
            "(batch, seq)": torch.arange(seq)[None] * torch.tensor([[1], [2]]) + torch.tensor(offsets)[:, None],
        }[pos_shape]
        out = adapter.run_multihead_self_attention_with_rope(
            d_model, heads, 32, theta, wq, wk, wv, wo, x, pos
        )
        torch.testing.assert_close(
            out.double(), ref.mha(wq, wk, wv, wo, x, heads, theta, pos), rtol=1e-4, atol=1e-5
        )

    check()


@pytest.mark.points(1)
def test_mha_with_rope_default_positions(adapter):
    """token_positions=None means 0..seq-1."""
    d_model, heads, seq = 8, 2, 6
    wq, wk, wv, wo = _mha_weights(d_model, 3)
    x = _randn(1, seq, d_model, seed=4)
    out = adapter.run_multihead_self_attention_with_rope(d_model, heads, 16, 10000.0, wq, wk, wv, wo, x)
    torch.testing.assert_close(out.double(), ref.mha(wq, wk, wv, wo, x, heads, 10000.0), rtol=1e-4, atol=1e-5)


@pytest.mark.points(2)
def test_mha_is_causal(adapter):
    """Changing tokens after position t leaves outputs at positions ≤ t unchanged (and changes later ones)."""

    @given(seed=SEED, seq=st.integers(2, 10), data=st.data())
    def check(seed, seq, data):
        t = data.draw(st.integers(0, seq - 2))
        d_model, heads = 8, 2
        wq, wk, wv, wo = _mha_weights(d_model, seed)
        x = _randn(1, seq, d_model, seed=seed + 5)
        y = x.clone()
        y[:, t + 1 :] = _randn(1, seq - t - 1, d_model, seed=seed + 6)
        run = lambda inp: adapter.run_multihead_self_attention_with_rope(
            d_model, heads, 16, 10000.0, wq, wk, wv, wo, inp
        )
        a, b = run(x), run(y)
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :], atol=1e-4)

    check()
