"""Adversarial input: one huge pre-token, absurd ids and ranks, a pattern that skips text, a bare string where a
list of specials belongs, non-UTF-8 files, and output permissions that must follow the umask."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lmfs.tokenizer.formats import (
    TokenizerFileError,
    load_merges,
    load_tiktoken,
    load_tokenizer,
    load_vocab,
    save_tokenizer,
    token_to_str,
)
from lmfs.tokenizer.pretokenize import MAX_PRETOKEN_BYTES
from lmfs.tokenizer.tokenizer import Tokenizer
from lmfs.tokenizer.train import train_bpe, train_from_counts

ROOT = Path(__file__).resolve().parents[2]
BYTES = {i: bytes([i]) for i in range(256)}
N = 2_000_000  # 'a' * N: the 200 MB case of a hundredfold smaller


def _one_pretoken(tmp_path: Path) -> Path:
    path = tmp_path / "a.txt"
    path.write_bytes(b"a" * N)
    return path


def test_one_huge_pretoken_trains_in_bounded_memory_python(tmp_path: Path) -> None:
    path = _one_pretoken(tmp_path)
    tracemalloc.start()
    try:
        vocab, _ = train_bpe(path, 300, backend="python", num_workers=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * N, f"peak {peak / 2**20:.1f} MiB for a {N / 2**20:.1f} MiB input"
    assert max(len(t) for t in vocab.values()) <= MAX_PRETOKEN_BYTES
    assert b"a" * MAX_PRETOKEN_BYTES in vocab.values()  # the cut pieces are still learned


_RSS = """
import resource, sys
from lmfs.tokenizer.train import train_bpe
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
vocab, merges = train_bpe(sys.argv[1], 300, num_workers=1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, max(len(t) for t in vocab.values()))
"""


def test_one_huge_pretoken_trains_in_bounded_memory_default_backend(tmp_path: Path) -> None:
    path = _one_pretoken(tmp_path)
    out = subprocess.run([sys.executable, "-c", _RSS, str(path)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    grown, longest = (int(x) for x in out.stdout.split())
    assert grown < 8 * N, f"peak RSS grew {grown / 2**20:.1f} MiB for a {N / 2**20:.1f} MiB input"
    assert longest <= MAX_PRETOKEN_BYTES


def test_pretoken_cap_cuts_at_character_boundaries() -> None:
    vocab, _ = train_from_counts({"é" * 1000: 3}, 300, max_pretoken_bytes=9, backend="python")
    assert all(len(t) <= 9 for t in vocab.values())
    assert all(t.decode("utf-8") for i, t in vocab.items() if i >= 256)  # no half characters


# ------------------------------------------------------------------------------------------------ ids and ranks


def test_vocab_id_of_a_trillion_is_a_clear_error(tmp_path: Path) -> None:
    raw = {token_to_str(bytes([i])): i for i in range(256)}
    raw[token_to_str(b"ab")] = 10**12
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(TokenizerFileError, match=r"vocab\.json.*1000000000000 is too large"):
        load_vocab(path)
    with pytest.raises(ValueError, match="far beyond"):
        Tokenizer({**BYTES, 10**12: b"ab"}, [])


def test_tiktoken_rank_of_a_trillion_is_a_clear_error(tmp_path: Path) -> None:
    import base64

    lines = [f"{base64.b64encode(bytes([i])).decode()} {i}" for i in range(256)]
    lines.append(f"{base64.b64encode(b'ab').decode()} {10**12}")
    path = tmp_path / "x.tiktoken"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TokenizerFileError, match=r"x\.tiktoken:257: rank 1000000000000 is too large"):
        load_tiktoken(path)


# ------------------------------------------------------------------------------------------------ the pattern


def test_tokenizer_json_whose_pattern_skips_text_is_an_error(tmp_path: Path) -> None:
    save_tokenizer(tmp_path, BYTES, [], pattern="[a-z]+")
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json.*does not cover the text"):
        load_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="does not cover"):
        Tokenizer(BYTES, [], pattern="[a-z]+")


def test_text_the_pattern_skips_is_never_dropped_silently() -> None:
    tok = Tokenizer(BYTES, [], pattern=r"[^\s\x07]+|\s+")  # covers ordinary text, not BEL
    assert tok.decode(tok.encode("Hello World 2024")) == "Hello World 2024"
    with pytest.raises(ValueError, match="does not cover the text"):
        tok.encode("ring \x07 here")


# ------------------------------------------------------------------------------------------------ argument types


def test_special_tokens_as_a_string_is_a_type_error(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        Tokenizer(BYTES, [], special_tokens="<|endoftext|>")
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world " * 20)
    with pytest.raises(TypeError, match="list of strings"):
        train_bpe(corpus, 300, special_tokens="<|endoftext|>")
    save_tokenizer(tmp_path / "tok", BYTES, [])
    with pytest.raises(TypeError, match="list of strings"):
        load_tokenizer(tmp_path / "tok", special_tokens="<|endoftext|>")
    info = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps({**info, "special_tokens": "<|eot|>"}))
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json.*list of strings"):
        load_tokenizer(tmp_path / "tok")


# ------------------------------------------------------------------------------------------------ encodings


def test_non_utf8_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    save_tokenizer(tmp_path, BYTES, [])
    vocab = tmp_path / "vocab.json"
    vocab.write_bytes(vocab.read_bytes().replace(b"{", b"{\xff", 1))
    with pytest.raises(TokenizerFileError, match=r"vocab\.json: not UTF-8"):
        load_vocab(vocab)
    merges = tmp_path / "merges.txt"
    merges.write_bytes(b"#version: 0.2\na b\n\xc3\x28 c\n")
    with pytest.raises(TokenizerFileError, match=r"merges\.txt:3: not UTF-8"):
        load_merges(merges)
    info = tmp_path / "tokenizer.json"
    info.write_bytes(b'{"pattern": "\xfe"}')
    with pytest.raises(TokenizerFileError, match=r"tokenizer\.json: not UTF-8"):
        load_tokenizer(tmp_path)


# ------------------------------------------------------------------------------------------------ permissions


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    from lmfs.tokenizer.encode_file import encode_file

    old = os.umask(0o027)
    try:
        out = save_tokenizer(tmp_path / "tok", BYTES, [])
        text = tmp_path / "t.txt"
        text.write_text("some text to encode\n" * 10)
        npy = tmp_path / "t.npy"
        encode_file(Tokenizer(BYTES, []), text, npy, num_workers=1)
    finally:
        os.umask(old)
    for path in [out / "vocab.json", out / "merges.txt", out / "tokenizer.json", npy]:
        assert path.stat().st_mode & 0o777 == 0o640, path
    assert np.load(npy).size == 200
