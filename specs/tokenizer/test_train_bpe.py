"""BPE training specs: merges identical to a naive reference, tie-breaking, special tokens, sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from specs.tokenizer.common import read_text, shared_data
from specs.tokenizer.reference import naive_train_bpe

EOT = "<|endoftext|>"


def _write(tmp_path: Path, text: str, name: str = "corpus.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.points(5)
def test_corpus_en_matches_naive_reference(adapter) -> None:
    path = shared_data("text", "corpus.en")
    vocab, merges = adapter.run_train_bpe(path, 500, [EOT])
    ref_vocab, ref_merges = naive_train_bpe(read_text("text", "corpus.en"), 500, [EOT])
    assert merges == ref_merges
    assert set(vocab.values()) == ref_vocab
    assert len(vocab) == 500 and sorted(vocab) == list(range(500))


@pytest.mark.points(2)
def test_tinystories_sample_with_special_tokens_matches_reference(adapter, tmp_path: Path) -> None:
    text = read_text("text", "tinystories_sample.txt")
    assert EOT in text
    vocab, merges = adapter.run_train_bpe(_write(tmp_path, text), 400, [EOT])
    ref_vocab, ref_merges = naive_train_bpe(text, 400, [EOT])
    assert merges == ref_merges
    assert set(vocab.values()) == ref_vocab


@pytest.mark.points(2)
def test_ties_go_to_the_lexicographically_greater_pair(adapter, tmp_path: Path) -> None:
    # pre-tokens "xy", " xy", " ab", " ab": (x,y), (" ",a), (a,b) all occur twice; (x,y) is the greatest
    _, merges = adapter.run_train_bpe(_write(tmp_path, "xy xy ab ab"), 257, [])
    assert merges == [(b"x", b"y")]
    # now (" ",a) and (a,b) occur 3 times: frequency beats order, then (a,b) > (" ",a) since "a" > " "
    _, merges = adapter.run_train_bpe(_write(tmp_path, "xy ab ab ab"), 258, [])
    assert merges == [(b"a", b"b"), (b" ", b"ab")]


@pytest.mark.points(2)
def test_special_tokens_are_never_merged(adapter, tmp_path: Path) -> None:
    text = (f"hello world{EOT}hello{EOT}{EOT}world\n" * 40) + f"{EOT}!{EOT}!"
    vocab, merges = adapter.run_train_bpe(_write(tmp_path, text), 300, [EOT])
    values = list(vocab.values())
    assert values.count(EOT.encode()) == 1
    for token in values:
        if token != EOT.encode():
            assert b"<|" not in token and b"|>" not in token, f"{token!r} crosses a special token"
    _ref_vocab, ref_merges = naive_train_bpe(text, 300, [EOT])
    assert merges == ref_merges


@pytest.mark.points(2)
def test_vocab_and_merge_counts(adapter, tmp_path: Path) -> None:
    specials = [EOT, "<|pad|>"]
    path = shared_data("text", "corpus.en")
    vocab, merges = adapter.run_train_bpe(path, 300, specials)
    assert len(vocab) == 300
    assert len(merges) == 300 - 256 - len(specials)
    values = list(vocab.values())
    assert len(set(values)) == len(values)
    assert {bytes([i]) for i in range(256)} <= set(values)
    assert {s.encode() for s in specials} <= set(values)
    for a, b in merges:  # every merge makes a vocab item out of two vocab items
        assert a in set(values) and b in set(values) and a + b in set(values)


@pytest.mark.points(2)
def test_special_token_that_is_a_substring_of_another(adapter, tmp_path: Path) -> None:
    specials = ["<|s|>", "<|s|><|s|>"]
    text = "aa<|s|>bb<|s|><|s|>cc<|s|><|s|><|s|>dd" * 5
    vocab, merges = adapter.run_train_bpe(_write(tmp_path, text), 270, specials)
    values = set(vocab.values())
    assert {b"<|s|>", b"<|s|><|s|>"} <= values
    _, ref_merges = naive_train_bpe(text, 270, specials)
    assert merges == ref_merges


@pytest.mark.points(1)
def test_empty_corpus(adapter, tmp_path: Path) -> None:
    vocab, merges = adapter.run_train_bpe(_write(tmp_path, ""), 300, [EOT])
    assert merges == []
    assert set(vocab.values()) == {bytes([i]) for i in range(256)} | {EOT.encode()}


@pytest.mark.points(2)
def test_trained_tokenizer_round_trips(adapter) -> None:
    vocab, merges = adapter.run_train_bpe(shared_data("text", "corpus.en"), 400, [EOT])
    tok = adapter.get_tokenizer(vocab, merges, [EOT])
    text = read_text("text", "tinystories_sample.txt")
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode("utf-8"))  # the merges compress
