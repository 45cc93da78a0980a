"""Sampling: temperature, top-p filtering, the generation loop's stopping and cropping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from lmfs.generate.sampling import generate_tokens, next_token_distribution, sample_next_token, top_p_filter

probs_st = st.lists(st.floats(min_value=1e-4, max_value=1.0), min_size=1, max_size=30).map(
    lambda xs: torch.tensor(xs, dtype=torch.float64) / sum(xs)
)


@given(probs=probs_st, top_p=st.floats(min_value=0.01, max_value=1.0))
def test_top_p_keeps_the_smallest_prefix_reaching_p(probs: torch.Tensor, top_p: float) -> None:
    out = top_p_filter(probs, top_p)
    assert torch.isclose(out.sum(), torch.tensor(1.0, dtype=out.dtype))
    kept = out > 0
    k = int(kept.sum())
    assert k >= 1 and probs[kept].max() == probs.max()  # a most likely token is kept
    # the kept set is the k most likely tokens (up to ties with the smallest kept probability)
    assert probs[kept].min() >= probs[~kept].max() if k < len(probs) else True
    mass = float(probs[kept].sum())
    assert mass >= top_p - 1e-9 or k == len(probs)
    # minimal: without its least likely member the set would fall short of top_p
    assert mass - float(probs[kept].min()) < top_p + 1e-9
    # renormalized proportionally
    assert torch.allclose(out[kept], probs[kept] / probs[kept].sum())


def test_temperature_scales_the_softmax() -> None:
    logits = torch.randn(3, 50)
    for t in (0.5, 1.0, 2.0):
        assert torch.allclose(
            next_token_distribution(logits, t), torch.softmax(logits / t, dim=-1), atol=1e-6
        )
    greedy = next_token_distribution(logits, 0.0)
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1)) and torch.equal(greedy.sum(-1), torch.ones(3))
    assert torch.equal(sample_next_token(logits, 0.0), logits.argmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        next_token_distribution(logits, -1.0)
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(torch.softmax(logits, -1), 0.0)


def test_samples_follow_the_distribution() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]])
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next_token(logits, 1.0, 1.0, gen) for _ in range(3000)]).flatten().numpy()
    p_true = torch.softmax(logits.double(), -1).flatten().numpy()
    expected = p_true / p_true.sum() * len(draws)
    p = stats.chisquare(np.bincount(draws, minlength=5), expected).pvalue
    assert p > 1e-4, p
    # p = (.607, .223, .135, ...): with top_p 0.7 only the two most likely tokens (0.83 of the mass) can appear
    draws = {int(sample_next_token(logits, 1.0, 0.7, gen)) for _ in range(300)}
    assert draws == {0, 1}


class CountingModel(torch.nn.Module):
    """Predicts (last token + 1) mod V with certainty; records the input lengths it saw."""

    def __init__(self, vocab: int = 10) -> None:
        super().__init__()
        self.vocab = vocab
        self.lengths: list[int] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.lengths.append(ids.shape[1])
        nxt = (ids + 1) % self.vocab
        return torch.nn.functional.one_hot(nxt, self.vocab).float() * 50.0


def test_generation_stops_at_eos_and_crops_to_the_context() -> None:
    model = CountingModel()
    out = list(generate_tokens(model, [3], 20, context_length=4, temperature=0.7, eos_id=8))
    assert out == [4, 5, 6, 7]  # 8 is the end-of-text token: not yielded, generation stops
    assert max(model.lengths) == 4
    out = list(generate_tokens(CountingModel(), [0, 1], 12, context_length=4, temperature=1.0, top_p=0.9))
    assert out == [(2 + i) % 10 for i in range(12)]
    with pytest.raises(ValueError, match="prompt is empty"):
        list(generate_tokens(model, [], 3, context_length=4))
