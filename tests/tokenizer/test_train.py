"""BPE training internals: determinism across cores and chunk sizes, the tie-break key, settings checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmfs.tokenizer.counting import count_pretokens
from lmfs.tokenizer.train import TrainStats, _reverse_key, train_bpe, train_from_counts

EOT = "<|endoftext|>"


@given(x=st.binary(max_size=6), y=st.binary(max_size=6), u=st.binary(max_size=6), v=st.binary(max_size=6))
def test_reverse_key_reverses_pair_order(x: bytes, y: bytes, u: bytes, v: bytes) -> None:
    assert ((x, y) < (u, v)) == (_reverse_key(x) + _reverse_key(y) > _reverse_key(u) + _reverse_key(v))
    assert ((x, y) == (u, v)) == (_reverse_key(x) + _reverse_key(y) == _reverse_key(u) + _reverse_key(v))


def test_same_merges_on_any_core_count_and_chunk_size(tmp_path: Path, corpus_en: str) -> None:
    path = tmp_path / "c.txt"
    path.write_text((corpus_en + EOT) * 3, encoding="utf-8")
    base = train_from_counts(count_pretokens(path, [EOT], num_workers=1, chunk_bytes=1 << 30), 600, [EOT])
    for workers, chunk in ((2, 10_000), (2, 333), (1, 50_000)):
        counts = count_pretokens(path, [EOT], num_workers=workers, chunk_bytes=chunk)
        assert train_from_counts(counts, 600, [EOT]) == base, (workers, chunk)


def test_stats_are_filled(tmp_path: Path, corpus_en: str) -> None:
    path = tmp_path / "c.txt"
    path.write_text(corpus_en, encoding="utf-8")
    stats = TrainStats()
    vocab, merges = train_bpe(path, 300, [EOT], stats=stats, num_workers=2)
    assert stats.num_merges == len(merges) == 300 - 257
    assert stats.distinct_pretokens > 1000 and stats.peak_rss_mb > 10 and stats.total_s > 0
    assert vocab[256] == EOT.encode()  # specials follow the bytes


def test_vocab_too_small_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(ValueError, match="at least 258"):
        train_bpe(path, 257, [EOT, "<|pad|>"])


def test_duplicate_and_empty_special_tokens(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("hello hello", encoding="utf-8")
    vocab, _ = train_bpe(path, 260, [EOT, EOT])
    assert list(vocab.values()).count(EOT.encode()) == 1 and len(vocab) == 260
    with pytest.raises(ValueError, match="non-empty"):
        train_bpe(path, 300, [""])


def test_corpus_runs_out_of_pairs(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text("ab ab", encoding="utf-8")
    vocab, merges = train_bpe(path, 1000, [])
    assert merges == [(b"a", b"b"), (b" ", b"ab")] and len(vocab) == 258


def test_non_utf8_corpus(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"good text\n\xff\xfe bad bytes")
    with pytest.raises(ValueError, match=r"bad\.txt: not valid UTF-8 at byte offset 10"):
        train_bpe(path, 300, [])


def test_pair_counts_of_repeated_pairs(tmp_path: Path) -> None:
    # "aaaa" holds (a,a) three times; after merging, "aa aa" holds (aa,aa) once
    path = tmp_path / "c.txt"
    path.write_text("aaaa", encoding="utf-8")
    _, merges = train_bpe(path, 258, [])
    assert merges == [(b"a", b"a"), (b"aa", b"aa")]


@pytest.mark.parametrize("backend", ["c", "python"])
def test_counts_must_be_integers(backend: str) -> None:
    from lmfs.tokenizer import native

    if backend == "c" and native.load("_cmerge") is None:
        pytest.skip("_cmerge is not built")
    with pytest.raises(TypeError, match=r"must be integers, got float 2\.5"):
        train_from_counts({"ab": 2.5, "cd": 3}, 260, backend=backend)
