"""The KV cache: incremental decoding gives the logits of a full forward pass, and generation with the cache gives
the tokens of generation without it while the sequence fits the context."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmfs.generate.sampling import generate_tokens
from lmfs.nn import TransformerConfig, TransformerLM


def _model(num_kv_heads: int = 4, norm: str = "pre", position: str = "rope", ctx: int = 32) -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerConfig(
        vocab_size=61,
        context_length=ctx,
        d_model=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=num_kv_heads,
        d_ff=64,
        norm=norm,
        position=position,
    )
    return TransformerLM(cfg).double().eval()


@settings(max_examples=25, deadline=None)
@given(
    kv_heads=st.sampled_from([4, 2, 1]),
    norm=st.sampled_from(["pre", "post", "none"]),
    position=st.sampled_from(["rope", "none"]),
    cuts=st.lists(st.integers(1, 31), max_size=4, unique=True),
    batch=st.integers(1, 2),
)
def test_incremental_logits_equal_the_full_forward(kv_heads, norm, position, cuts, batch) -> None:
    model = _model(kv_heads, norm, position)
    ids = torch.randint(0, 61, (batch, 32), generator=torch.Generator().manual_seed(len(cuts)))
    full = model(ids)
    cache = model.new_kv_cache(batch_size=batch)
    bounds = [0, *sorted(cuts), 32]
    parts = [model(ids[:, a:b], kv_cache=cache) for a, b in pairwise(bounds) if b > a]
    assert cache.length == 32
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-10, atol=1e-10)


def test_a_wrong_cache_changes_the_logits() -> None:
    """The comparison above can fail: feeding a token against an unrelated cached prefix gives other logits."""
    model = _model()
    ids = torch.randint(0, 61, (1, 10), generator=torch.Generator().manual_seed(1))
    cache = model.new_kv_cache()
    model(torch.zeros(1, 9, dtype=torch.long), kv_cache=cache)
    assert not torch.allclose(model(ids[:, 9:], kv_cache=cache), model(ids)[:, 9:])


@pytest.mark.parametrize("kv_heads", [4, 1])
def test_greedy_generation_with_and_without_cache(kv_heads: int) -> None:
    model = _model(kv_heads, ctx=32)
    prompt = [5, 7, 11]
    with_cache = list(generate_tokens(model, prompt, 29, context_length=32, temperature=0))
    without = list(generate_tokens(model, prompt, 29, context_length=32, temperature=0, kv_cache=False))
    assert with_cache == without and len(with_cache) == 29


def test_sampled_generation_with_and_without_cache_same_seed() -> None:
    model = _model(2)
    runs = [
        list(
            generate_tokens(
                model,
                [1, 2],
                20,
                context_length=32,
                temperature=0.9,
                top_p=0.9,
                generator=torch.Generator().manual_seed(3),
                kv_cache=kv,
            )
        )
        for kv in (True, False)
    ]
    assert runs[0] == runs[1]


def test_generation_past_the_context_refills_the_cache() -> None:
    model = _model(ctx=16)
    out = list(generate_tokens(model, [3] * 20, 40, context_length=16, temperature=0))  # prompt > context
    assert len(out) == 40 and all(0 <= t < 61 for t in out)
    for ctx in (1, 2, 3):  # tiny contexts: the cache is rebuilt from the last token(s) when full
        model = _model(ctx=ctx)
        out = list(generate_tokens(model, [3, 4, 5], 6, context_length=ctx, temperature=0))
        assert len(out) == 6
        if ctx == 1:  # both see exactly the last token
            assert out == list(
                generate_tokens(model, [3, 4, 5], 6, context_length=1, temperature=0, kv_cache=False)
            )


def test_cache_errors() -> None:
    model = _model(ctx=8)
    cache = model.new_kv_cache()
    model(torch.zeros(1, 6, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="KVCache is full"):
        model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
    assert cache.length == 6  # a refused call leaves the cache as it was
    with pytest.raises(ValueError, match="batch size 1"):
        model(torch.zeros(2, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="max_len"):
        model.new_kv_cache(max_len=9)
    cache.reset()
    assert cache.length == 0
    model(torch.zeros(1, 8, dtype=torch.long), kv_cache=cache)
