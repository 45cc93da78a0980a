"""The batched fallback decoder: left-padded prompts of different lengths give exactly what one-at-a-time
decoding gives (greedy), and sampling is reproducible from a generator."""

from __future__ import annotations

import torch

from lmfs.align.rollout import SamplingParams, decode_batch, generate
from lmfs.align.tasks import CharTokenizer
from lmfs.nn import TransformerConfig, TransformerLM


def _model():
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=tok.vocab_size, context_length=32, d_model=32,
                                            num_layers=2, num_heads=4, num_kv_heads=2, d_ff=64))
    return model.eval(), tok


def test_left_padded_batch_equals_single_rows():
    model, tok = _model()
    prompts = [tok.encode(p) for p in ("1+2=", "12+345=", "9=", "1234+5678=")]
    params = SamplingParams(temperature=0.0, max_tokens=5)
    batched = decode_batch(model, tok, prompts, params)
    single = [decode_batch(model, tok, [p], params)[0] for p in prompts]
    assert [c.token_ids for c in batched] == [c.token_ids for c in single]
    assert all(len(c.token_ids) == 5 and c.finish_reason == "length" for c in batched)


def _padded_last_logits(model, short, long, masked: bool):
    from lmfs.align.rollout import _PadMaskedAttention

    pad = len(long) - len(short)
    ids = torch.tensor([[0] * pad + short, long])
    valid = torch.ones_like(ids, dtype=torch.bool)
    valid[0, :pad] = False
    saved = [layer.attn.attention_fn for layer in model.layers]
    wrapper = _PadMaskedAttention(saved[0])
    wrapper.valid = valid if masked else None
    try:
        for layer in model.layers:
            layer.attn.attention_fn = wrapper
        with torch.no_grad():
            return model(ids, kv_cache=model.new_kv_cache(batch_size=2, max_len=len(long)))[0, -1]
    finally:
        for layer, fn in zip(model.layers, saved, strict=True):
            layer.attn.attention_fn = fn


def test_padding_mask_matters():
    """The left-padded row's logits equal the unpadded row's only with the pad mask (so the test above can fail)."""
    model, tok = _model()
    short, long = tok.encode("1+2="), tok.encode("1234+5678=")
    with torch.no_grad():
        alone = model(torch.tensor([short]))[0, -1]
    assert torch.allclose(_padded_last_logits(model, short, long, True), alone, atol=1e-5)
    assert not torch.allclose(_padded_last_logits(model, short, long, False), alone, atol=1e-3)


def test_sampling_reproducible_and_stops():
    model, tok = _model()
    params = SamplingParams(temperature=1.0, max_tokens=6, stop_token_ids=(tok.eos_token_id,))
    a = generate(model, tok, ["1+1="] * 4, params, generator=torch.Generator().manual_seed(3), use_engine=False)
    b = generate(model, tok, ["1+1="] * 4, params, generator=torch.Generator().manual_seed(3), use_engine=False)
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    assert all(tok.eos_token_id not in c.token_ids for c in a)
