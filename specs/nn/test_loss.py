"""Specs for the cross-entropy loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from specs.nn import reference as ref

SEED = st.integers(0, 2**31 - 1)


@pytest.mark.points(2)
def test_cross_entropy_matches_reference_and_builtin(adapter):
    @given(
        seed=SEED, batch=st.integers(1, 16), vocab=st.integers(2, 50), scale=st.sampled_from([0.1, 1.0, 10.0])
    )
    def check(seed, batch, vocab, scale):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(batch, vocab, generator=g) * scale
        targets = torch.randint(0, vocab, (batch,), generator=g)
        loss = adapter.run_cross_entropy(logits, targets)
        assert loss.dim() == 0
        torch.testing.assert_close(loss, F.cross_entropy(logits, targets), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loss.double(), ref.cross_entropy(logits, targets), rtol=1e-5, atol=1e-5)

    check()


@pytest.mark.points(2)
def test_cross_entropy_stable_for_one_hot_logits_times_1000(adapter):
    """Logits = 1000·one_hot(c): loss ≈ 0 when c is the target and ≈ 1000 when it is not; never inf/NaN."""

    @given(seed=SEED, vocab=st.integers(2, 40), batch=st.integers(1, 8))
    def check(seed, vocab, batch):
        g = torch.Generator().manual_seed(seed)
        classes = torch.randint(0, vocab, (batch,), generator=g)
        logits = F.one_hot(classes, vocab).float() * 1000.0
        right = adapter.run_cross_entropy(logits, classes)
        wrong = adapter.run_cross_entropy(logits, (classes + 1) % vocab)
        assert torch.isfinite(right) and torch.isfinite(wrong)
        torch.testing.assert_close(right, torch.tensor(0.0), rtol=0, atol=1e-4)
        torch.testing.assert_close(wrong, torch.tensor(1000.0), rtol=1e-5, atol=1e-3)

    check()


@pytest.mark.points(1)
def test_cross_entropy_large_logits_match_builtin(adapter):
    g = torch.Generator().manual_seed(3)
    logits, targets = torch.randn(8, 30, generator=g) * 1e4, torch.randint(0, 30, (8,), generator=g)
    torch.testing.assert_close(adapter.run_cross_entropy(logits, targets), F.cross_entropy(logits, targets))


@pytest.mark.points(1)
def test_cross_entropy_over_batch_seq_vocab(adapter):
    """(batch, seq, vocab) logits with (batch, seq) targets: the mean over all positions."""
    g = torch.Generator().manual_seed(4)
    logits, targets = torch.randn(3, 5, 11, generator=g), torch.randint(0, 11, (3, 5), generator=g)
    loss = adapter.run_cross_entropy(logits, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1)))
