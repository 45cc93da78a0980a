"""Specs for the Transformer block and the full LM (CS336 state-dict names)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from specs.nn import reference as ref

SEED = st.integers(0, 2**31 - 1)


def _block_weights(d_model: int, d_ff: int, seed: int) -> dict[str, torch.Tensor]:
    lm = ref.cs336_weights(vocab=2, d_model=d_model, num_layers=1, d_ff=d_ff, seed=seed)
    return {k[len("layers.0.") :]: v for k, v in lm.items() if k.startswith("layers.0.")}


@pytest.mark.points(3)
def test_transformer_block_matches_reference(adapter):
    @given(seed=SEED, heads=st.sampled_from([1, 2, 4]), seq=st.integers(1, 8))
    def check(seed, heads, seq):
        d_model, d_ff = 8, 12
        w = _block_weights(d_model, d_ff, seed)
        x = torch.randn(2, seq, d_model, generator=torch.Generator().manual_seed(seed))
        out = adapter.run_transformer_block(d_model, heads, d_ff, 16, 10000.0, w, x)
        assert out.shape == x.shape
        torch.testing.assert_close(out.double(), ref.block(w, x, heads, 10000.0), rtol=1e-4, atol=1e-4)

    check()


@pytest.mark.points(4)
def test_transformer_lm_matches_reference(adapter):
    @given(seed=SEED, layers=st.integers(1, 3), seq=st.integers(1, 12))
    def check(seed, layers, seq):
        vocab, ctx, d_model, heads, d_ff, theta = 37, 12, 16, 4, 24, 10000.0
        w = ref.cs336_weights(vocab, d_model, layers, d_ff, seed=seed)
        ids = torch.randint(0, vocab, (2, seq), generator=torch.Generator().manual_seed(seed))
        out = adapter.run_transformer_lm(vocab, ctx, d_model, layers, heads, d_ff, theta, w, ids)
        assert out.shape == (2, seq, vocab)
        torch.testing.assert_close(
            out.double(), ref.transformer_lm(w, ids, layers, heads, theta), rtol=1e-4, atol=1e-4
        )

    check()


@pytest.mark.points(2)
def test_transformer_lm_is_causal(adapter):
    """Logits at positions ≤ t do not depend on tokens after t."""
    vocab, ctx, d_model, layers, heads, d_ff = 29, 10, 16, 2, 2, 20
    w = ref.cs336_weights(vocab, d_model, layers, d_ff, seed=11)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, ctx), generator=g)
    for t in (0, 4, 8):
        other = ids.clone()
        other[:, t + 1 :] = (
            other[:, t + 1 :] + 1 + torch.randint(0, vocab - 1, (1, ctx - t - 1), generator=g)
        ) % vocab
        a = adapter.run_transformer_lm(vocab, ctx, d_model, layers, heads, d_ff, 10000.0, w, ids)
        b = adapter.run_transformer_lm(vocab, ctx, d_model, layers, heads, d_ff, 10000.0, w, other)
        torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :], atol=1e-3)


@pytest.mark.points(1)
def test_transformer_lm_uses_every_weight(adapter):
    """Perturbing any one weight tensor changes the logits (no weight is silently ignored)."""
    vocab, ctx, d_model, layers, heads, d_ff = 23, 8, 8, 2, 2, 12
    w = ref.cs336_weights(vocab, d_model, layers, d_ff, seed=5)
    ids = torch.arange(8).reshape(1, 8) % vocab
    base = adapter.run_transformer_lm(vocab, ctx, d_model, layers, heads, d_ff, 10000.0, w, ids)
    for key in w:
        changed = dict(w)
        changed[key] = w[key] * 1.5 + 0.05
        out = adapter.run_transformer_lm(vocab, ctx, d_model, layers, heads, d_ff, 10000.0, changed, ids)
        assert not torch.allclose(out, base, atol=1e-6), f"logits ignore {key}"
