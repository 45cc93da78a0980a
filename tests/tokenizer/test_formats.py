"""File formats: lmfs's save/load, GPT-2's files, tiktoken rank files, errors with file and line."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from lmfs.paths import has_shared_data, shared_data
from lmfs.tokenizer.formats import (
    TokenizerFileError,
    bytes_to_unicode,
    load_merges,
    load_tiktoken,
    load_tiktoken_ranks,
    load_tokenizer,
    load_vocab,
    save_tokenizer,
)
from lmfs.tokenizer.train import train_bpe

EOT = "<|endoftext|>"


def test_bytes_to_unicode_is_a_printable_bijection() -> None:
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256)) and len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("A")] == "A"


def test_save_load_round_trip(tmp_path: Path, corpus_en: str) -> None:
    src = tmp_path / "c.txt"
    src.write_text(corpus_en + EOT + "\u00a0 \x00 \xff ünïcode 🙂", encoding="utf-8")
    vocab, merges = train_bpe(src, 500, [EOT])
    save_tokenizer(tmp_path / "tok", vocab, merges, [EOT])
    assert load_vocab(tmp_path / "tok" / "vocab.json") == vocab
    assert load_merges(tmp_path / "tok" / "merges.txt") == merges
    tok = load_tokenizer(tmp_path / "tok")
    assert tok.special_tokens == [EOT]
    text = corpus_en[:5000] + EOT + "🙂"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and ids.count(256) == 1
    assert not list((tmp_path / "tok").glob(".*"))  # atomic writes leave no temp files


def test_malformed_merges_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "merges.txt"
    path.write_text("#version: 0.2\nĠ t\nh e\nthis line is bad\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt:4: expected two tokens"):
        load_merges(path)
    path.write_text("#version: 0.2\nĠ \x01\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt:2: .*not in GPT-2's byte-to-unicode alphabet"):
        load_merges(path)


def test_malformed_vocab(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text('{\n"a": 0,\n"b": oops\n}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"vocab\.json:3: not valid JSON"):
        load_vocab(path)
    path.write_text('{"a": 0, "b": 0}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="id 0 is used twice"):
        load_vocab(path)


def test_missing_tokenizer_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lmfs tokenizer train"):
        load_tokenizer(tmp_path)


def test_malformed_tiktoken_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.tiktoken"
    good = base64.b64encode(b"a").decode()
    path.write_text(f"{good} 0\n!!notbase64 1\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"bad\.tiktoken:2: bad token or rank"):
        load_tiktoken_ranks(path)
    path.write_text(f"{good} 0 extra\n", encoding="utf-8")
    with pytest.raises(TokenizerFileError, match=r"bad\.tiktoken:1: expected"):
        load_tiktoken_ranks(path)


TIKTOKEN_FILES = {
    "gpt2": "0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4",
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
}


@pytest.mark.parametrize("encoding", sorted(TIKTOKEN_FILES))
def test_tiktoken_files_match_tiktoken(encoding: str) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    if not has_shared_data("tokenizers", "tiktoken_cache", TIKTOKEN_FILES[encoding]):
        pytest.skip("needs the tiktoken cache in ../shared")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared_data("tokenizers", "tiktoken_cache")))
    ref = tiktoken.get_encoding(encoding)
    tok = load_tiktoken(shared_data("tokenizers", "tiktoken_cache", TIKTOKEN_FILES[encoding]), encoding)
    for name in ("corpus.en", "german.txt", "address.txt", "tinystories_sample.txt"):
        text = shared_data("text", name).read_text(encoding="utf-8")
        assert tok.encode(text) == ref.encode(text, allowed_special="all"), (encoding, name)
    odd = "Numbers 1234567 and CAPS DON'T, tabs\t\t\n\n  spaces   \r\n🙂 ünï"
    assert tok.encode(odd) == ref.encode(odd)
    assert tok.decode(tok.encode(odd)) == odd


def test_unknown_tiktoken_encoding(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown tiktoken encoding"):
        load_tiktoken(tmp_path / "x", "p50k_edit")
