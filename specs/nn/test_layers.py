"""Specs for the basic layers: Linear, Embedding, RMSNorm, SiLU, SwiGLU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from specs.nn import reference as ref

SEED = st.integers(0, 2**31 - 1)


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.points(2)
def test_linear_matches_reference(adapter):
    @given(
        seed=SEED,
        d_in=st.integers(1, 24),
        d_out=st.integers(1, 24),
        batch=st.lists(st.integers(1, 4), max_size=2),
    )
    def check(seed, d_in, d_out, batch):
        w, x = _randn(d_out, d_in, seed=seed), _randn(*batch, d_in, seed=seed + 1)
        out = adapter.run_linear(d_in, d_out, w, x)
        assert out.shape == (*batch, d_out)
        torch.testing.assert_close(out.double(), ref.linear(w, x), rtol=1e-5, atol=1e-5)

    check()


@pytest.mark.points(1)
def test_linear_has_no_bias(adapter):
    w = _randn(5, 3)
    out = adapter.run_linear(3, 5, w, torch.zeros(2, 3))
    assert torch.count_nonzero(out) == 0


@pytest.mark.points(2)
def test_embedding_matches_reference(adapter):
    @given(
        seed=SEED,
        vocab=st.integers(1, 30),
        d=st.integers(1, 16),
        shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    )
    def check(seed, vocab, d, shape):
        table = _randn(vocab, d, seed=seed)
        ids = torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))
        out = adapter.run_embedding(vocab, d, table, ids)
        assert out.shape == (*shape, d)
        torch.testing.assert_close(out.double(), ref.embedding(table, ids), rtol=0, atol=0)

    check()


@pytest.mark.points(2)
def test_rmsnorm_matches_reference(adapter):
    @given(seed=SEED, d=st.integers(1, 32), eps=st.sampled_from([1e-5, 1e-6, 1e-2]))
    def check(seed, d, eps):
        g, x = _randn(d, seed=seed), _randn(3, 4, d, seed=seed + 1) * 3
        out = adapter.run_rmsnorm(d, eps, g, x)
        torch.testing.assert_close(out.double(), ref.rmsnorm(g, x, eps), rtol=1e-5, atol=1e-5)

    check()


@pytest.mark.points(1)
def test_rmsnorm_matches_torch_builtin(adapter):
    g, x = _randn(16, seed=3), _randn(2, 7, 16, seed=4)
    torch.testing.assert_close(adapter.run_rmsnorm(16, 1e-5, g, x), F.rms_norm(x, (16,), g, eps=1e-5))


@pytest.mark.points(2)
def test_rmsnorm_scale_invariant(adapter):
    @given(seed=SEED, scale=st.floats(1e-3, 1e3), d=st.integers(2, 32))
    def check(seed, scale, d):
        """RMSNorm(c·x) = RMSNorm(x) for c > 0 (up to eps, negligible at these norms)."""
        g, x = _randn(d, seed=seed), _randn(4, d, seed=seed + 1) + 0.5
        a, b = adapter.run_rmsnorm(d, 1e-12, g, x), adapter.run_rmsnorm(d, 1e-12, g, x * scale)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)

    check()


@pytest.mark.points(1)
def test_rmsnorm_float32_inside_returns_input_dtype(adapter):
    """bf16 in, bf16 out, but with the accuracy of a float32 computation (squares of 300 overflow bf16's precision)."""
    g = torch.ones(64)
    x = (_randn(8, 64, seed=5) * 300).to(torch.bfloat16)
    out = adapter.run_rmsnorm(64, 1e-5, g.to(torch.bfloat16), x)
    assert out.dtype == torch.bfloat16
    expected = ref.rmsnorm(g, x.double(), 1e-5).to(torch.bfloat16)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.points(1)
def test_silu_matches_builtin_and_reference(adapter):
    @given(seed=SEED)
    def check(seed):
        x = _randn(5, 9, seed=seed) * 10
        out = adapter.run_silu(x)
        torch.testing.assert_close(out, F.silu(x))
        torch.testing.assert_close(out.double(), ref.silu(x), rtol=1e-5, atol=1e-6)

    check()


@pytest.mark.points(2)
def test_swiglu_matches_reference(adapter):
    @given(seed=SEED, d_model=st.integers(1, 16), d_ff=st.integers(1, 24))
    def check(seed, d_model, d_ff):
        w1, w3 = _randn(d_ff, d_model, seed=seed), _randn(d_ff, d_model, seed=seed + 1)
        w2, x = _randn(d_model, d_ff, seed=seed + 2), _randn(2, 3, d_model, seed=seed + 3)
        out = adapter.run_swiglu(d_model, d_ff, w1, w2, w3, x)
        assert out.shape == x.shape
        torch.testing.assert_close(out.double(), ref.swiglu(w1, w2, w3, x), rtol=1e-4, atol=1e-4)

    check()


@pytest.mark.points(1)
def test_swiglu_gate_order(adapter):
    """W1 is the gated (SiLU) branch and W3 the linear one: swapping them must change the output."""
    w1, w3, w2, x = _randn(6, 4, seed=1), _randn(6, 4, seed=2), _randn(4, 6, seed=3), _randn(3, 4, seed=4)
    out = adapter.run_swiglu(4, 6, w1, w2, w3, x)
    swapped = ref.swiglu(w3, w2, w1, x)
    torch.testing.assert_close(out.double(), ref.swiglu(w1, w2, w3, x), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out.double(), swapped, atol=1e-3)
