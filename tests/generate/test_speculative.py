"""Speculative decoding: greedy output equals the target's; each emitted token is distributed as the target's."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare

from lmfs.generate.sampling import generate_tokens
from lmfs.generate.speculative import SpeculativeStats, speculative_generate, verify
from lmfs.nn import TransformerConfig, TransformerLM


def _lm(
    d_model: int, layers: int, kv_heads: int | None = None, vocab: int = 50, seed: int = 0
) -> TransformerLM:
    torch.manual_seed(seed)
    cfg = TransformerConfig(
        vocab_size=vocab,
        context_length=64,
        d_model=d_model,
        num_layers=layers,
        num_heads=4,
        num_kv_heads=kv_heads,
        d_ff=2 * d_model,
    )
    return TransformerLM(cfg).double()


@pytest.mark.parametrize("k", [1, 3, 6])
def test_greedy_equals_the_targets_greedy(k: int) -> None:
    target, draft = _lm(32, 2, kv_heads=2), _lm(16, 1, seed=1)
    expected = list(generate_tokens(target, [4, 5, 6], 30, context_length=64, temperature=0))
    stats = SpeculativeStats()
    got = list(speculative_generate(target, draft, [4, 5, 6], 30, k=k, temperature=0, stats=stats))
    assert got == expected and stats.emitted == 30
    # a draft that is the target itself is always right: k + 1 tokens per target call
    stats = SpeculativeStats()
    assert (
        list(speculative_generate(target, target, [4, 5, 6], 30, k=k, temperature=0, stats=stats)) == expected
    )
    assert stats.acceptance_rate == 1.0 and stats.target_calls == -(-30 // (k + 1))


def test_sampling_with_the_target_as_draft_accepts_everything() -> None:
    target = _lm(32, 2)
    stats = SpeculativeStats()
    gen = torch.Generator().manual_seed(0)
    out = list(
        speculative_generate(
            target, target, [1], 24, k=3, temperature=0.9, top_p=0.95, generator=gen, stats=stats
        )
    )
    assert len(out) == 24 and stats.acceptance_rate == 1.0 and stats.target_calls == 6


def test_stops_at_eos() -> None:
    target = _lm(32, 2)
    expected = list(generate_tokens(target, [7], 20, context_length=64, temperature=0))
    eos = expected[5]
    cut = expected[: expected.index(eos)]
    assert (
        list(speculative_generate(target, _lm(16, 1, seed=2), [7], 20, k=4, temperature=0, eos_id=eos)) == cut
    )


def _first_token_counts(
    p: torch.Tensor, q: torch.Tensor, trials: int, seed: int, always_accept: bool = False
):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.zeros(p.shape[1])
    for _ in range(trials):
        drafts = [int(torch.multinomial(q[i], 1, generator=gen)) for i in range(q.shape[0])]
        first = drafts[0] if always_accept else verify(p, q, drafts, gen)[0][0]
        counts[first] += 1
    return counts


def test_verify_emits_the_target_distribution() -> None:
    """The first emitted token of a round is distributed as p_1, whatever the draft's q (chi-square test); the
    same test rejects the draft's own distribution, so it can tell them apart."""
    gen = torch.Generator().manual_seed(0)
    V, k, trials = 6, 3, 4000
    p = torch.softmax(torch.randn(k + 1, V, generator=gen, dtype=torch.float64) * 1.5, dim=-1)
    q = torch.softmax(torch.randn(k, V, generator=gen, dtype=torch.float64) * 1.5, dim=-1)
    counts = _first_token_counts(p, q, trials, seed=1)
    assert chisquare(counts.numpy(), (p[0] * trials).numpy()).pvalue > 1e-4
    naive = _first_token_counts(p, q, trials, seed=1, always_accept=True)
    assert chisquare(naive.numpy(), (p[0] * trials).numpy()).pvalue < 1e-6


def test_bad_arguments() -> None:
    target = _lm(32, 2)
    with pytest.raises(ValueError, match="vocabularies differ"):
        list(speculative_generate(target, _lm(16, 1, vocab=40), [1], 5))
    with pytest.raises(ValueError, match="exceeds the context length 64"):
        list(speculative_generate(target, target, [1] * 50, 15, k=4))
    assert len(list(speculative_generate(target, target, [1] * 50, 14, k=4))) == 14  # exactly fills the context
    with pytest.raises(ValueError, match="k must be >= 1"):
        list(speculative_generate(target, target, [1], 5, k=0))
    with pytest.raises(ValueError, match="prompt is empty"):
        list(speculative_generate(target, target, [], 5))
    with pytest.raises(ValueError, match="expected p"):
        verify(torch.ones(2, 3) / 3, torch.ones(2, 3) / 3, [0, 1])
