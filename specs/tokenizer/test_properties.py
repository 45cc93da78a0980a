"""Property tests (hypothesis) for the tokenizer, through the adapter."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specs.tokenizer.common import gpt2_vocab_and_merges
from specs.tokenizer.reference import naive_train_bpe

EOT = "<|endoftext|>"

# text that exercises the pre-tokenizer: letters, digits, contractions, runs of spaces and newlines, punctuation,
# non-ASCII letters and emoji, and special tokens
PIECES = [
    "a",
    "b",
    "ab",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\t",
    "'",
    "'s",
    "'ll",
    "1",
    "23",
    ".",
    "!?",
    "é",
    "ß",
    "日本",
    "🙂",
    "\u00a0",
    "\r\n",
    EOT,
    "<|",
    "|>",
]
texty = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
no_surrogates = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@pytest.fixture(scope="module")
def gpt2(adapter):
    vocab, merges = gpt2_vocab_and_merges()
    return adapter.get_tokenizer(vocab, merges, [EOT])


@pytest.fixture(scope="module")
def byte_tokenizer(adapter):
    return adapter.get_tokenizer({i: bytes([i]) for i in range(256)}, [])


@pytest.fixture(scope="module")
def train_bpe(adapter):
    # hypothesis inspects a test's first argument, so the tests take these plain callables, not the adapter
    return adapter.run_train_bpe


@pytest.mark.points(3)
@given(text=st.one_of(no_surrogates, texty))
def test_decode_encode_round_trip(gpt2, text: str) -> None:
    assert gpt2.decode(gpt2.encode(text)) == text


@pytest.mark.points(2)
@given(ids=st.lists(st.integers(0, 255), max_size=40))
def test_decode_of_arbitrary_bytes_uses_replacement_char(byte_tokenizer, ids: list[int]) -> None:
    assert byte_tokenizer.decode(ids) == bytes(ids).decode("utf-8", errors="replace")


@pytest.mark.points(3)
@given(text=texty, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_encoding_is_invariant_to_stream_chunking(gpt2, text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=False)]
    assert list(gpt2.encode_iterable(iter(pieces))) == gpt2.encode(text)


@pytest.mark.points(2)
@given(text=texty)
def test_specials_are_single_ids(gpt2, text: str) -> None:
    ids = gpt2.encode(text)
    eot_id = gpt2.encode(EOT)
    assert len(eot_id) == 1
    assert ids.count(eot_id[0]) == text.count(EOT)


small_corpus = st.lists(
    st.sampled_from(["a", "b", "c", "ab", " ", "\n", "ba", "abc", "'s", "!", EOT]), max_size=80
).map("".join)


@pytest.mark.points(4)
@settings(max_examples=30)
@given(text=small_corpus, extra=st.integers(0, 25), use_special=st.booleans())
def test_training_equals_naive_reference(train_bpe, text: str, extra: int, use_special: bool) -> None:
    specials = [EOT] if use_special else []
    vocab_size = 256 + len(specials) + extra
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "corpus.txt")
        with open(path, "wb") as f:
            f.write(text.encode("utf-8"))
        vocab, merges = train_bpe(path, vocab_size, specials)
    ref_vocab, ref_merges = naive_train_bpe(text, vocab_size, specials)
    assert merges == ref_merges
    assert set(vocab.values()) == ref_vocab
    # invariants: size bounded by vocab_size, one new token per merge
    assert len(vocab) == 256 + len(specials) + len(merges) <= vocab_size
