"""The model's one attention seam, ``attention_fn(q, k, v, *, is_causal, mask=None, scale=None)``: the full forward
and the KV-cached path both go through it, with grouped K/V only for a callable that accepts them."""

from __future__ import annotations

import functools
from itertools import pairwise

import pytest
import torch

from lmfs.nn import (
    TransformerConfig,
    TransformerLM,
    causal_attention,
    causal_mask,
    scaled_dot_product_attention,
)
from lmfs.nn.attention import accepts_grouped_kv


def _model(num_kv_heads: int) -> TransformerLM:
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=61, context_length=32, d_model=32, num_layers=2, num_heads=4,
                            num_kv_heads=num_kv_heads, d_ff=64)
    return TransformerLM(cfg).double().eval()


class Recorder:
    """Wraps an attention_fn and records every call (k's heads, n_q, n_k, is_causal, mask shape)."""

    def __init__(self, fn=causal_attention, grouped: bool = False) -> None:
        self.fn, self.calls = fn, []
        if grouped:
            self.supports_gqa = True

    def __call__(self, q, k, v, *, is_causal, mask=None, scale=None):
        self.calls.append((k.shape[1], q.shape[-2], k.shape[-2], is_causal, None if mask is None else tuple(mask.shape)))
        return self.fn(q, k, v, is_causal=is_causal, mask=mask, scale=scale)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_cached_decoding_calls_attention_fn_and_matches_the_full_forward(kv_heads, grouped):
    model = _model(kv_heads)
    ids = torch.randint(0, 61, (2, 20), generator=torch.Generator().manual_seed(1))
    full = model(ids)
    spy = Recorder(grouped=grouped)
    model.set_attention_fn(spy)
    cache = model.new_kv_cache(batch_size=2)
    bounds = [0, 6, 7, 8, 15, 20]
    parts = [model(ids[:, a:b], kv_cache=cache) for a, b in pairwise(bounds)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-10, atol=1e-10)

    heads = kv_heads if grouped else 4
    expected = []
    for a, b in pairwise(bounds):
        n = b - a
        if a == 0:
            call = (heads, n, b, True, None)  # nothing cached yet: plain causal
        elif n == 1:
            call = (heads, 1, b, False, None)  # one new position sees every key
        else:
            call = (heads, n, b, False, (n, b))  # causal among the new ones, aligned to the end
        expected += [call] * model.config.num_layers
    assert spy.calls == expected


def test_the_full_forward_repeats_kv_heads_for_every_callable():
    model = _model(2)
    spy = Recorder(grouped=True)
    model.set_attention_fn(spy)
    model(torch.randint(0, 61, (1, 9)))
    assert spy.calls == [(4, 9, 9, True, None)] * 2


def test_a_cached_step_through_a_wrong_kernel_changes_the_logits():
    """The cached path really uses attention_fn: a kernel that zeroes attention changes the cached logits."""
    model = _model(2)
    ids = torch.randint(0, 61, (1, 10), generator=torch.Generator().manual_seed(2))
    cache = model.new_kv_cache()
    model(ids[:, :9], kv_cache=cache)
    model.set_attention_fn(Recorder(lambda q, k, v, **kw: causal_attention(q, k, v, **kw) * 0.0))
    wrong = model(ids[:, 9:], kv_cache=cache)
    model.set_attention_fn(causal_attention)
    assert not torch.allclose(wrong, model(ids)[:, 9:])


def test_default_attention_takes_mask_scale_and_grouped_heads():
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(2, 6, 5, 8, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(2, 3, 9, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    mask = torch.rand(2, 6, 5, 9, generator=gen) < 0.7
    mask[..., -1] = True
    out = causal_attention(q, k, v, is_causal=True, mask=mask, scale=0.3)
    rep = [x.repeat_interleave(2, dim=1) for x in (k, v)]
    ref = scaled_dot_product_attention(q, *rep, mask & causal_mask(5, 9), scale=0.3)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert accepts_grouped_kv(causal_attention)
    assert accepts_grouped_kv(functools.wraps(causal_attention)(lambda *a, **kw: None))
    with pytest.raises(ValueError, match="6 query heads cannot share 4 key/value heads"):
        causal_attention(q, torch.randn(2, 4, 9, 8), torch.randn(2, 4, 9, 8))


def test_the_positional_is_causal_of_causal_attention_still_works():
    q, k, v = (torch.randn(1, 2, 7, 4) for _ in range(3))
    torch.testing.assert_close(causal_attention(q, k, v, True), causal_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(causal_attention(q, k, v, False), scaled_dot_product_attention(q, k, v))
