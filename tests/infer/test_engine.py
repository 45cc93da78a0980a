"""The engine against the reference decoder (lmfs.generate.generate_tokens): greedy output per request equals
single-request decoding whatever the batch composition, with requests joining mid-stream; the static cache is
never read past a sequence's length; per-request sampling, stops, limits, cancellation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmfs.generate.sampling import generate_tokens
from lmfs.infer import Engine, SamplingParams
from lmfs.infer.sampling import sampling_probs
from lmfs.nn import TransformerConfig, TransformerLM

VOCAB = 95


class CharTokenizer:
    """Printable ASCII, one id per character (id i is chr(32 + i)); a newline is encoded as "~"."""

    def __init__(self) -> None:
        self.vocab = {i: bytes([32 + i]) for i in range(VOCAB)}

    def encode(self, text: str) -> list[int]:
        return [94 if c == "\n" else ord(c) - 32 for c in text]  # a newline reads as "~"

    def decode(self, ids) -> str:
        return "".join(chr(32 + i) for i in ids)


def make_model(seed: int = 0, dtype=torch.float64, **overrides) -> TransformerLM:
    cfg = dict(
        vocab_size=VOCAB, context_length=64, d_model=32, num_layers=2, num_heads=4, num_kv_heads=2, d_ff=64
    )
    cfg.update(overrides)
    torch.manual_seed(seed)
    return TransformerLM(TransformerConfig(**cfg), dtype=dtype).eval()


def reference(model, prompt, n):
    return list(generate_tokens(model, prompt, n, context_length=model.config.context_length, temperature=0))


def random_prompts(lengths, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.mark.parametrize("max_batch", [1, 2, 3, 8])
def test_greedy_equals_reference_for_every_batch_size(model, max_batch):
    lengths = [3, 11, 1, 7, 20, 5, 2, 9]
    news = [12, 3, 8, 1, 15, 6, 10, 4]  # different lengths: requests leave and waiting ones join mid-batch
    prompts = random_prompts(lengths)
    engine = Engine(model, max_batch=max_batch, max_seq=48)
    outs = engine.generate(prompts, [SamplingParams(temperature=0, max_tokens=n) for n in news])
    for p, n, o in zip(prompts, news, outs, strict=True):
        assert o.token_ids == reference(model, p, n)
        assert o.finish_reason == "length" and o.prompt_ids == p


@pytest.mark.parametrize(
    "overrides",
    [
        dict(num_kv_heads=None),
        dict(num_kv_heads=1),
        dict(norm="post"),
        dict(position="none"),
        dict(ffn="silu"),
    ],
    ids=["mha", "mqa", "post-norm", "nope", "silu"],
)
def test_greedy_equals_reference_for_model_variants(overrides):
    m = make_model(seed=3, **overrides)
    prompts = random_prompts([4, 9, 2], seed=5)
    outs = Engine(m, max_batch=2, max_seq=40).generate(prompts, SamplingParams(temperature=0, max_tokens=10))
    assert [o.token_ids for o in outs] == [reference(m, p, 10) for p in prompts]


def test_requests_joining_mid_stream(model):
    engine = Engine(model, max_batch=4, max_seq=60)
    first = random_prompts([5, 13], seed=7)
    later = random_prompts([2, 17, 8, 4], seed=8)
    greedy = SamplingParams(temperature=0, max_tokens=20)
    reqs = [engine.submit(p, greedy) for p in first]
    for _ in range(6):  # a step prefills and decodes: the first two are 7 tokens in when the others arrive
        engine.step()
    assert all(len(r.token_ids) == 7 for r in reqs)
    reqs += [engine.submit(p, SamplingParams(temperature=0, max_tokens=9)) for p in later]
    while engine.has_work():
        engine.step()
        assert engine.num_running <= 4
    for r, p in zip(reqs, first + later, strict=True):
        assert r.token_ids == reference(model, p, len(r.token_ids))
        assert len(r.token_ids) == r.params.max_tokens


def test_float32_engine_matches_reference_logits():
    """In float32 batched matmuls may round differently; the logits still agree closely."""
    m = make_model(dtype=torch.float32)
    prompt = random_prompts([6])[0]
    engine = Engine(m, max_batch=4, max_seq=32)
    r = engine.submit(prompt, SamplingParams(temperature=0, max_tokens=5))
    engine.step()
    ids = torch.tensor([prompt + r.token_ids])
    full = m(ids)[0, -1]
    logits = engine._forward_step(
        torch.tensor([[r.token_ids[-1]]] + [[0]] * 3),
        torch.tensor([len(prompt) + len(r.token_ids) - 1, 0, 0, 0]),
        len(prompt) + len(r.token_ids),
    )[0, -1]
    torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- the static cache is never read past a length


def poisoned_step_matches(engine_cls, lengths, seed) -> bool:
    """Prefill prompts of ``lengths`` into their slots, then compare one decode step on the cache as it is with
    one on a cache whose positions ≥ each slot's length hold huge garbage: equal iff nothing past a length is
    read (the step writes position ``length`` itself before attending)."""
    m = make_model(seed=seed % 3)
    engine = engine_cls(m, max_batch=len(lengths), max_seq=40)
    for p in random_prompts(lengths, seed=seed):
        engine.submit(p, SamplingParams(temperature=0, max_tokens=50))
    engine._admit([])
    n = len(lengths)
    tokens = torch.tensor([[engine.pending[s]] for s in range(n)])
    start = torch.tensor(engine.lengths[:n])
    kv_len = engine.max_seq
    saved = [(k.clone(), v.clone()) for k, v in zip(engine.k_cache, engine.v_cache, strict=True)]
    clean = engine._forward_step(tokens, start, kv_len)
    g = torch.Generator().manual_seed(seed)
    for (k0, v0), k, v in zip(saved, engine.k_cache, engine.v_cache, strict=True):
        k.copy_(k0)
        v.copy_(v0)
        for s, length in enumerate(engine.lengths[:n]):
            k[s, :, length:] = 1e4 * torch.randn(k[s, :, length:].shape, generator=g, dtype=k.dtype)
            v[s, :, length:] = 1e4 * torch.randn(v[s, :, length:].shape, generator=g, dtype=v.dtype)
    poisoned = engine._forward_step(tokens, start, kv_len)
    return torch.equal(clean, poisoned)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 38), min_size=1, max_size=4), seed=st.integers(0, 1000))
def test_static_cache_never_reads_past_a_length(lengths, seed):
    with torch.no_grad():
        assert poisoned_step_matches(Engine, lengths, seed)


class NoMaskEngine(Engine):
    """A broken engine: every cached position is visible."""

    @staticmethod
    def _key_mask(pos, kv_len):
        return torch.ones(*pos.shape, kv_len, dtype=torch.bool, device=pos.device)


class OffByOneEngine(Engine):
    """A broken engine: one position past the length is visible."""

    @staticmethod
    def _key_mask(pos, kv_len):
        return torch.arange(kv_len)[None, None, :] <= pos[:, :, None] + 1


@pytest.mark.parametrize("broken", [NoMaskEngine, OffByOneEngine])
def test_the_cache_property_catches_a_broken_mask(broken):
    with torch.no_grad():
        assert not poisoned_step_matches(broken, [3, 10, 1], seed=4)


# ---------------------------------------------------------------- sampling, stops, limits


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(model):
    prompts = random_prompts([4, 8, 2, 6], seed=11)
    params = [SamplingParams(temperature=0.9, top_p=0.9, top_k=20, max_tokens=15, seed=i) for i in range(4)]
    a = Engine(model, max_batch=4, max_seq=40).generate(prompts, params)
    b = Engine(model, max_batch=4, max_seq=40).generate(prompts, params)
    alone = [
        Engine(model, max_batch=1, max_seq=40).generate([p], [sp])[0]
        for p, sp in zip(prompts, params, strict=True)
    ]
    assert [o.token_ids for o in a] == [o.token_ids for o in b] == [o.token_ids for o in alone]
    other_seed = Engine(model, max_batch=4, max_seq=40).generate(
        prompts, [SamplingParams(temperature=0.9, max_tokens=15, seed=100 + i) for i in range(4)]
    )
    assert [o.token_ids for o in other_seed] != [o.token_ids for o in a]


def test_top_k_and_top_p_filters():
    logits = torch.tensor([3.0, 1.0, 2.0, 0.0, -1.0])
    probs = sampling_probs(logits, SamplingParams(temperature=1.0, top_k=2))
    assert (probs > 0).tolist() == [True, False, True, False, False]
    assert probs.sum().item() == pytest.approx(1.0)
    full = torch.softmax(logits, -1)
    probs = sampling_probs(logits, SamplingParams(temperature=1.0, top_p=0.5))
    assert (probs > 0).sum().item() == 1 and full[0] > 0.5
    assert torch.equal(sampling_probs(logits, SamplingParams(temperature=0)), torch.eye(5)[0])


def test_top_k_one_is_greedy(model):
    prompts = random_prompts([5, 9], seed=2)
    outs = Engine(model, max_batch=2, max_seq=40).generate(
        prompts, SamplingParams(temperature=1.3, top_k=1, max_tokens=10, seed=0)
    )
    assert [o.token_ids for o in outs] == [reference(model, p, 10) for p in prompts]


def test_stop_token_and_stop_string():
    m = make_model(seed=1)
    tok = CharTokenizer()
    engine = Engine(m, tok, max_batch=2, max_seq=60)
    prompt = "hello world"
    free = reference(m, tok.encode(prompt), 30)
    text = tok.decode(free)
    # stop token: the first generated id, excluded
    stop_id = free[4]
    out = engine.generate([prompt], SamplingParams(temperature=0, max_tokens=30, stop_token_ids=(stop_id,)))[
        0
    ]
    cut = free.index(stop_id)
    assert out.token_ids == free[:cut] and out.finish_reason == "stop"
    # stop string: two characters from the middle of the free text; the text stops before it
    stop = text[10:12]
    out = engine.generate([prompt], SamplingParams(temperature=0, max_tokens=30, stop=(stop,)))[0]
    assert out.text == text[: text.index(stop)] and out.finish_reason == "stop"
    assert out.token_ids == free[: text.index(stop) + 2]


def test_streamed_pieces_hold_back_a_possible_stop_string():
    m = make_model(seed=1)
    tok = CharTokenizer()
    engine = Engine(m, tok, max_batch=1, max_seq=60)
    free = tok.decode(reference(m, tok.encode("abc"), 30))
    stop = free[12:15]
    pieces: list[str] = []
    req = engine.submit(
        "abc",
        SamplingParams(temperature=0, max_tokens=30, stop=(stop,)),
        on_event=lambda r, piece, done: pieces.append(piece),
    )
    while engine.has_work():
        engine.step()
    assert "".join(pieces) == req.text == free[: free.index(stop)]
    assert all(stop not in "".join(pieces[: i + 1]) for i in range(len(pieces)))


def test_limits_and_lengths(model):
    engine = Engine(model, max_batch=2, max_seq=16)
    out = engine.generate([[1, 2, 3]], SamplingParams(temperature=0, max_tokens=0))[0]
    assert out.token_ids == [] and out.finish_reason == "length"
    # the cache holds 16 positions: a 10-token prompt gets 16 - 10 + 1 = 7 tokens, then "length"
    out = engine.generate([list(range(10))], SamplingParams(temperature=0, max_tokens=100))[0]
    assert len(out.token_ids) == 7 and out.finish_reason == "length"
    assert out.token_ids == reference(model, list(range(10)), 7)
    with pytest.raises(ValueError, match="max_seq is 16"):
        engine.generate([list(range(17))])
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[]])
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        engine.generate([[VOCAB]])
    with pytest.raises(ValueError, match="needs a tokenizer"):
        engine.generate(["text"])
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="max_seq"):
        Engine(model, max_seq=65)


def test_cancel_frees_the_slot(model):
    engine = Engine(model, max_batch=1, max_seq=60)
    a = engine.submit([1, 2], SamplingParams(temperature=0, max_tokens=50))
    b = engine.submit([3, 4], SamplingParams(temperature=0, max_tokens=5))
    engine.step()
    assert a.slot == 0 and b.slot is None
    engine.cancel(a)
    while engine.has_work():
        engine.step()
    assert a.finish_reason == "cancelled" and b.finish_reason == "length"
    assert b.token_ids == reference(model, [3, 4], 5)


def test_token_logprobs_are_the_models(model):
    prompt = random_prompts([5])[0]
    out = Engine(model, max_batch=1, max_seq=40).generate(
        [prompt], SamplingParams(temperature=0, max_tokens=4)
    )[0]
    ids = torch.tensor([prompt + out.token_ids])
    logp = torch.log_softmax(model(ids)[0].double(), -1)
    want = [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(out.token_ids)]
    assert out.token_logprobs == pytest.approx(want, abs=1e-5)  # computed in float32


def test_background_loop_serves_threads(model):
    import threading

    engine = Engine(model, max_batch=3, max_seq=40)
    engine.start_loop()
    try:
        prompts = random_prompts([3, 6, 9, 2, 5], seed=21)
        results: dict[int, list[int]] = {}

        def worker(i):
            results[i] = engine.generate([prompts[i]], SamplingParams(temperature=0, max_tokens=8))[
                0
            ].token_ids

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [results[i] for i in range(5)] == [reference(model, p, 8) for p in prompts]
    finally:
        engine.stop_loop()


# ---------------------------------------------------------------- speculative decoding in the engine


@pytest.mark.parametrize("draft", ["layers:1", "ngram", "ngram:2"])
@pytest.mark.parametrize("k", [1, 3])
def test_speculative_greedy_equals_reference(draft, k):
    m = make_model(seed=4, num_layers=3)
    prompts = random_prompts([4, 12, 1, 7, 9], seed=13)
    news = [14, 5, 9, 20, 3]
    engine = Engine(m, max_batch=3, max_seq=40, draft=draft, draft_k=k)
    outs = engine.generate(prompts, [SamplingParams(temperature=0, max_tokens=n) for n in news])
    assert [o.token_ids for o in outs] == [reference(m, p, n) for p, n in zip(prompts, news, strict=True)]
    assert engine.stats.draft_proposed > 0
    # the decode steps emitted more tokens than they took: at least one draft was accepted somewhere
    assert 0 <= engine.stats.draft_accepted <= engine.stats.draft_proposed


def test_ngram_draft_is_accepted_on_repetitive_text():
    """A model that has learned nothing repeats; on a periodic prompt prompt lookup is mostly accepted."""
    m = make_model(seed=4)
    engine = Engine(m, max_batch=1, max_seq=64, draft="ngram", draft_k=4)
    prompt = [5, 6, 7, 8] * 6
    out = engine.generate([prompt], SamplingParams(temperature=0, max_tokens=30))[0]
    assert out.token_ids == reference(m, prompt, 30)
    assert engine.stats.decode_steps < 30  # fewer target passes than tokens


def test_speculative_sampling_is_seeded_and_reaches_the_end():
    m = make_model(seed=4, num_layers=3)
    prompts = random_prompts([5, 8], seed=3)
    params = [SamplingParams(temperature=0.8, max_tokens=12, seed=i) for i in range(2)]
    a = Engine(m, max_batch=2, max_seq=40, draft="layers:2", draft_k=3).generate(prompts, params)
    b = Engine(m, max_batch=2, max_seq=40, draft="layers:2", draft_k=3).generate(prompts, params)
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    assert all(len(o.token_ids) == 12 for o in a)


def test_speculative_cache_end_is_respected():
    m = make_model(seed=4, num_layers=3)
    engine = Engine(m, max_batch=1, max_seq=16, draft="ngram", draft_k=4)
    out = engine.generate([list(range(10))], SamplingParams(temperature=0, max_tokens=100))[0]
    assert out.token_ids == reference(m, list(range(10)), 7) and out.finish_reason == "length"


def test_bad_drafts():
    m = make_model(num_layers=2)
    for bad in ("layers:2", "layers:0", "layers:x", "ngram:0", "medusa"):
        with pytest.raises(ValueError):
            Engine(m, max_seq=32, draft=bad)
    with pytest.raises(ValueError, match="draft_k"):
        Engine(m, max_seq=32, draft="ngram", draft_k=0)


# ---------------------------------------------------------------- packed weights (float32 on the CPU)


def _step_logits(engine, prompt):
    engine.submit(prompt, SamplingParams(temperature=0, max_tokens=5))
    engine._admit([])
    n = 1
    with torch.no_grad():
        return engine._forward_step(
            torch.tensor([[engine.pending[0]]]), torch.tensor(engine.lengths[:n]), engine.lengths[0] + 1
        )[0, -1]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs a torch with oneDNN")
@pytest.mark.parametrize("ffn", ["swiglu", "silu"])
def test_packed_weights_match_the_models_matmuls(ffn):
    m = make_model(seed=2, dtype=torch.float32, ffn=ffn)
    prompt = random_prompts([7], seed=3)[0]
    packed = Engine(m, max_batch=2, max_seq=32)
    plain = Engine(m, max_batch=2, max_seq=32, pack_weights=False)
    assert packed.packed is not None and plain.packed is None
    torch.testing.assert_close(_step_logits(packed, prompt), _step_logits(plain, prompt), atol=1e-4, rtol=1e-4)
    # every projection went through the packed GEMM: qkv, output, the FFN (SwiGLU's W1|W3 as one), LM head
    assert packed.packed.num_packed == 4 * m.config.num_layers + 1


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs a torch with oneDNN")
def test_packed_weights_follow_a_model_that_changes():
    """An engine kept over a model being trained (rollouts between optimizer steps) must not use stale packed
    weights: an in-place update of any weight is seen by the next step."""
    m = make_model(seed=4, dtype=torch.float32)
    prompt = random_prompts([5], seed=6)[0]
    engine = Engine(m, max_batch=1, max_seq=32)
    before = _step_logits(engine, prompt)
    engine.slots[0] = None
    with torch.no_grad():
        m.layers[1].ffn.w3.weight.mul_(1.5)
        m.lm_head.weight.add_(0.01)
    after = _step_logits(engine, prompt)
    fresh = _step_logits(Engine(m, max_batch=1, max_seq=32, pack_weights=False), prompt)
    assert not torch.allclose(before, after, atol=1e-3)
    torch.testing.assert_close(after, fresh, atol=1e-4, rtol=1e-4)


def test_pack_weights_refuses_float64(model):
    with pytest.raises(ValueError, match="float32"):
        Engine(model, max_batch=1, max_seq=16, pack_weights=True)
