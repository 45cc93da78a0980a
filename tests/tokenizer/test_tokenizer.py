"""Tokenizer internals: documented lone-surrogate handling, cache bound, errors, whole-file encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lmfs.tokenizer.tokenizer as tokmod
from lmfs.tokenizer.encode_file import encode_file, token_dtype
from lmfs.tokenizer.tokenizer import Tokenizer

EOT = "<|endoftext|>"


@given(text=st.text(max_size=40))
def test_lone_surrogates_become_replacement_chars(gpt2_tokenizer, text: str) -> None:
    expected = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text)) == expected


def test_lone_surrogate_example(gpt2_tokenizer) -> None:
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode("a\ud800b")) == "a\ufffdb"


def test_cache_is_bounded(monkeypatch, gpt2_tokenizer, corpus_en: str) -> None:
    tok = Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT])
    monkeypatch.setattr(tokmod, "CACHE_LIMIT", 100)
    ids = tok.encode(corpus_en)
    assert 0 < tok.cache_size() <= 100  # cleared whenever full (the C encoder's cache, or the Python one)
    assert ids == gpt2_tokenizer.encode(corpus_en)


def test_decode_unknown_id(gpt2_tokenizer) -> None:
    with pytest.raises(ValueError, match=r"unknown token id\(s\) \[99999\]"):
        gpt2_tokenizer.decode([1, 99999])


def test_bad_vocab_and_merges() -> None:
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ValueError, match="not in the vocab"):
        Tokenizer(vocab, [(b"a", b"b")])
    with pytest.raises(ValueError, match="single-byte"):
        Tokenizer({i: bytes([i]) for i in range(200)}, [])


def test_special_token_added_when_missing() -> None:
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], ["<|x|>"])
    assert tok.encode("a<|x|>") == [97, 256] and tok.decode([256]) == "<|x|>"


def test_encode_iterable_on_a_huge_single_string(gpt2_tokenizer) -> None:
    text = "word " * 300_000  # 1.5 MB in one string, processed in bounded pieces
    assert list(gpt2_tokenizer.encode_iterable([text])) == gpt2_tokenizer.encode(text)


@pytest.mark.parametrize("workers", [1, 2])
def test_encode_file_equals_encode(tmp_path: Path, gpt2_tokenizer, corpus_en: str, workers: int) -> None:
    text = (corpus_en + f"\n{EOT}\n") * 3
    src = tmp_path / "in.txt"
    src.write_bytes(text.encode("utf-8"))
    st = encode_file(gpt2_tokenizer, src, tmp_path / "out.npy", num_workers=workers, chunk_bytes=20_000)
    arr = np.load(tmp_path / "out.npy", mmap_mode="r")
    assert arr.dtype == np.uint16 and st.tokens == len(arr)
    assert arr.tolist() == gpt2_tokenizer.encode(text)
    assert int((arr == 50256).sum()) == 3  # <|endoftext|> between documents
    assert st.bytes == len(text.encode("utf-8")) and st.bytes_per_token > 1


def test_encode_file_empty_and_uint32(tmp_path: Path, gpt2_tokenizer) -> None:
    src = tmp_path / "empty.txt"
    src.write_bytes(b"")
    st = encode_file(gpt2_tokenizer, src, tmp_path / "e.npy", dtype="uint32")
    arr = np.load(tmp_path / "e.npy")
    assert st.tokens == 0 and arr.shape == (0,) and arr.dtype == np.uint32
    assert token_dtype(65_536) == "uint16" and token_dtype(65_537) == "uint32"
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


@given(
    text=st.lists(
        st.sampled_from([" ", "  ", "\n", "a", "bc", "'s", ".", "\u00a0", "\x1c", EOT]), max_size=80
    ).map("".join),
    size=st.integers(1, 30),
)
def test_encode_iterable_small_pieces(gpt2_tokenizer, text: str, size: int) -> None:
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    old = tokmod.STREAM_PIECE
    tokmod.STREAM_PIECE = 4  # exercise the stable-cut logic every few characters
    try:
        assert list(gpt2_tokenizer.encode_iterable(pieces)) == gpt2_tokenizer.encode(text)
    finally:
        tokmod.STREAM_PIECE = old


@pytest.fixture(scope="module")
def cl100k_regex_tokenizer(gpt2_tokenizer):
    from lmfs.tokenizer.pretokenize import CL100K_PATTERN

    return Tokenizer(gpt2_tokenizer.vocab, gpt2_tokenizer.merges, [EOT], pattern=CL100K_PATTERN)


@given(
    text=st.lists(
        st.sampled_from([" ", "  ", "\n", "\r\n", "a", "BC", "'s", "'LL", ".", "!\n", "1234", "\u00a0", EOT]),
        max_size=80,
    ).map("".join),
    size=st.integers(1, 30),
)
def test_encode_iterable_small_pieces_without_coarse_split(
    cl100k_regex_tokenizer, text: str, size: int
) -> None:
    tok = cl100k_regex_tokenizer
    assert tok._coarse is None
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    old = tokmod.STREAM_PIECE
    tokmod.STREAM_PIECE = 4
    try:
        assert list(tok.encode_iterable(pieces)) == tok.encode(text)
    finally:
        tokmod.STREAM_PIECE = old
