"""Specs for the SFT functions: prompt/output tokenization, entropy, response log-probs, masked normalization and
the SFT microbatch step (loss value and the gradient it leaves on the log-probs)."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from specs.align import reference as ref

SEED = st.integers(0, 2**31 - 1)
FAST = settings(deadline=None, max_examples=40)


class CharTokenizer:
    """A tokenizer with one id per character (its code point); 0 pads. Speaks both ``encode`` and the Hugging Face
    call interface, so any reasonable implementation can use it."""

    pad_token_id = 0
    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = True, **_: object) -> list[int]:
        return [ord(c) for c in text]

    def __call__(self, text, add_special_tokens: bool = True, **_: object) -> dict:
        ids = self.encode(text) if isinstance(text, str) else [self.encode(t) for t in text]
        return _Encoding(input_ids=ids)


class _Encoding(dict):
    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def _as_bool(t: torch.Tensor) -> torch.Tensor:
    return t.bool() if t.dtype != torch.bool else t


@pytest.mark.points(2)
def test_tokenize_prompt_and_output_by_hand(adapter):
    out = adapter.run_tokenize_prompt_and_output(["ab", "xyz"], ["c", "pq"], CharTokenizer())
    a, b, c, x, y, z, p, q = (ord(ch) for ch in "abcxyzpq")
    # full rows: a b c . .  and  x y z p q  (L = 5, padded with 0)
    assert out["input_ids"].tolist() == [[a, b, c, 0], [x, y, z, p]]
    assert out["labels"].tolist() == [[b, c, 0, 0], [y, z, p, q]]
    assert _as_bool(out["response_mask"]).tolist() == [[False, True, False, False], [False, False, True, True]]


@functools.cache
def _load_gpt2(folder: str):
    import transformers

    vocab, merges = f"{folder}/gpt2_encoder.json", f"{folder}/gpt2_vocab.bpe"
    # transformers >= 5 reads the files from vocab= / merges= (and ignores vocab_file=); 4.x from *_file=
    for kwargs in ({"vocab": vocab, "merges": merges}, {"vocab_file": vocab, "merges_file": merges}):
        try:
            tok = transformers.GPT2TokenizerFast(**kwargs)
        except (TypeError, ValueError, OSError):
            continue
        if len(tok) == 50257 and tok.encode("Hi there") == [17250, 612]:
            tok.pad_token = tok.eos_token
            return tok
    pytest.skip("could not build transformers.GPT2TokenizerFast from the shared GPT-2 files")


def _gpt2_tokenizer():
    pytest.importorskip("transformers")
    env = os.environ.get("LMFS_SHARED_DIR")
    here = Path(__file__).resolve()
    for base in ([Path(env)] if env else []) + [here.parents[2].parent / "shared", Path.cwd().parent / "shared"]:
        folder = base / "data" / "tokenizers"
        if (folder / "gpt2_encoder.json").exists() and (folder / "gpt2_vocab.bpe").exists():
            return _load_gpt2(str(folder))
    pytest.skip("GPT-2 tokenizer files not found under the shared data folder (set LMFS_SHARED_DIR)")


@pytest.mark.points(2)
def test_tokenize_prompt_and_output_gpt2(adapter):
    tok = _gpt2_tokenizer()
    prompts = ["Question: what is 2 + 2?\nAnswer:", "Hi", "Translate 'chat' to English:", "λ calculus"]
    outputs = [" 4", " there, how are you doing today?", " cat <|endoftext|>", " is fun\n\n"]
    out = adapter.run_tokenize_prompt_and_output(prompts, outputs, tok)
    rows = [(tok.encode(p), tok.encode(o)) for p, o in zip(prompts, outputs, strict=True)]
    full_len = max(len(p) + len(o) for p, o in rows)
    pad = tok.pad_token_id
    for i, (p, o) in enumerate(rows):
        full = p + o + [pad] * (full_len - len(p) - len(o))
        assert out["input_ids"][i].tolist() == full[:-1]
        assert out["labels"][i].tolist() == full[1:]
        mask = [len(p) <= j + 1 < len(p) + len(o) for j in range(full_len - 1)]
        assert _as_bool(out["response_mask"][i]).tolist() == mask
        assert tok.decode(out["labels"][i][_as_bool(out["response_mask"][i])].tolist()) == outputs[i]
    for key in ("input_ids", "labels", "response_mask"):
        assert out[key].shape == (len(prompts), full_len - 1)


@pytest.mark.points(2)
def test_compute_entropy_matches_reference(adapter):
    @FAST
    @given(
        seed=SEED,
        lead=st.lists(st.integers(1, 4), min_size=1, max_size=3),
        vocab=st.integers(1, 40),
        scale=st.sampled_from([0.01, 1.0, 10.0, 100.0]),
    )
    def check(seed, lead, vocab, scale):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(*lead, vocab, generator=g, dtype=torch.float64) * scale
        got = adapter.run_compute_entropy(logits)
        assert got.shape == tuple(lead)
        torch.testing.assert_close(got.double(), ref.entropy(logits), rtol=1e-7, atol=1e-9)

    check()


@pytest.mark.points(1)
def test_compute_entropy_extreme_logits_and_ties(adapter):
    vocab = 7
    uniform = torch.full((3, vocab), 1e4)  # ties at a large value: log V, no overflow (float32 ulp at 1e4: 1e-3)
    got = adapter.run_compute_entropy(uniform)
    torch.testing.assert_close(got, torch.full((3,), math.log(vocab)), rtol=0, atol=2e-3)
    peaked = torch.tensor([[1e4, 0.0, -1e4, 0.0], [0.0, 0.0, 1e4, 1e4], [-1e4, -1e4, -1e4, -1e4]])
    got = adapter.run_compute_entropy(peaked)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, torch.tensor([0.0, math.log(2), math.log(4)]), rtol=0, atol=2e-3)
    mixed = torch.randn(5, 11, generator=torch.Generator().manual_seed(1)) * 3e3
    got = adapter.run_compute_entropy(mixed)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), ref.entropy(mixed), rtol=0, atol=2e-3)


def _tiny_llama(vocab: int):
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to(torch.float64).eval()


@pytest.mark.points(2)
def test_get_response_log_probs_tiny_llama(adapter):
    vocab = 50
    model = _tiny_llama(vocab)
    g = torch.Generator().manual_seed(3)
    input_ids = torch.randint(0, vocab, (3, 9), generator=g)
    labels = torch.randint(0, vocab, (3, 9), generator=g)
    with torch.no_grad():
        logits = model(input_ids).logits
    expected_lp, expected_h = ref.label_log_probs(logits, labels), ref.entropy(logits)

    out = adapter.run_get_response_log_probs(model, input_ids, labels, True)
    assert out["log_probs"].shape == (3, 9) and out["token_entropy"].shape == (3, 9)
    torch.testing.assert_close(out["log_probs"].detach().double(), expected_lp, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(out["token_entropy"].detach().double(), expected_h, rtol=1e-7, atol=1e-9)

    out = adapter.run_get_response_log_probs(model, input_ids, labels, False)
    torch.testing.assert_close(out["log_probs"].detach().double(), expected_lp, rtol=1e-7, atol=1e-9)
    assert out.get("token_entropy") is None


def _masked_problem(seed: int, shape: tuple[int, ...], p_keep: float):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(*shape, generator=g, dtype=torch.float64)
    mask = torch.rand(*shape, generator=g) < p_keep
    return values, mask


@pytest.mark.points(2)
def test_masked_normalize_matches_reference(adapter):
    @FAST
    @given(
        seed=SEED,
        shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple),
        p_keep=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
        constant=st.sampled_from([1.0, 0.5, 3.0, 42.0]),
        data=st.data(),
    )
    def check(seed, shape, p_keep, constant, data):
        values, mask = _masked_problem(seed, shape, p_keep)
        dim = data.draw(st.sampled_from([None, *range(len(shape)), -1]))
        got = adapter.run_masked_normalize(values, mask, dim=dim, normalize_constant=constant)
        torch.testing.assert_close(got.double(), ref.masked_normalize(values, mask, dim, constant))

    check()


@pytest.mark.points(1)
def test_masked_normalize_defaults_and_empty_mask(adapter):
    values, mask = _masked_problem(5, (4, 6), 0.5)
    torch.testing.assert_close(adapter.run_masked_normalize(values, mask).double(), ref.masked_normalize(values, mask, None, 1.0))
    empty = torch.zeros(4, 6, dtype=torch.bool)
    torch.testing.assert_close(adapter.run_masked_normalize(values, empty, dim=-1).double(), torch.zeros(4, dtype=torch.float64))
    assert adapter.run_masked_normalize(values, empty).item() == 0.0


@pytest.mark.points(3)
def test_sft_microbatch_train_step_loss_and_gradient(adapter):
    @FAST
    @given(
        seed=SEED,
        batch=st.integers(1, 5),
        length=st.integers(1, 9),
        accum=st.sampled_from([1, 2, 4]),
        constant=st.sampled_from([1.0, 2.5, 10.0]),
    )
    def check(seed, batch, length, accum, constant):
        values, mask = _masked_problem(seed, (batch, length), 0.6)
        log_probs = (-values.abs()).requires_grad_()
        loss, metadata = adapter.run_sft_microbatch_train_step(log_probs, mask, accum, constant)
        assert isinstance(metadata, dict)
        sums = ref.masked_sum_rows(log_probs.detach(), mask)
        expected = -math.fsum(sums) / constant / batch / accum
        assert loss.dim() == 0
        assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
        # d loss / d log_prob[b, t] = -mask[b, t] / (constant * batch * accum)
        expected_grad = [
            [-1.0 / (constant * batch * accum) if m else 0.0 for m in row] for row in mask.tolist()
        ]
        assert log_probs.grad is not None
        torch.testing.assert_close(log_probs.grad, torch.tensor(expected_grad, dtype=torch.float64))

    check()


@pytest.mark.points(1)
def test_sft_microbatch_train_step_default_constant(adapter):
    values, mask = _masked_problem(11, (3, 5), 0.5)
    log_probs = (-values.abs()).requires_grad_()
    loss, _ = adapter.run_sft_microbatch_train_step(log_probs, mask, 2)
    assert loss.item() == pytest.approx(-math.fsum(ref.masked_sum_rows(log_probs.detach(), mask)) / 3 / 2)
