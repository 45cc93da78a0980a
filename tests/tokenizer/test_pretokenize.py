"""Chunking at safe cuts: chunked pre-token counts equal whole-text counts; bad bytes give clear errors."""

from __future__ import annotations

import io
import itertools
import os
import tempfile
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmfs.tokenizer.counting import count_pretokens, count_text
from lmfs.tokenizer.pretokenize import (
    CL100K_PATTERN,
    GPT2_PATTERN,
    chunk_boundaries,
    compile_pattern,
    special_regex,
    split_on_specials,
)

EOT = "<|endoftext|>"
PIECES = [
    "a",
    "bc",
    "The",
    " ",
    "  ",
    "\n",
    "\n\n",
    " \n",
    "\t",
    "'s",
    "'",
    "1",
    "99",
    ".",
    "!\n",
    "é",
    "日本",
    "🙂",
    "\u00a0",
    "\r\n",
    EOT,
    "x y",
    "ab cd",
]
texty = st.lists(st.sampled_from(PIECES), max_size=200).map("".join)


def _counts_by_chunks(text: str, chunk: int, specials: list[str], pattern: str = GPT2_PATTERN) -> Counter:
    data = text.encode("utf-8")
    bounds = chunk_boundaries(io.BytesIO(data), chunk, specials)
    assert bounds[0] == 0 and bounds[-1] == len(data)
    assert all(a < b for a, b in itertools.pairwise(bounds)) or not data
    total: Counter = Counter()
    for s, e in itertools.pairwise(bounds):
        total.update(count_text(data[s:e].decode("utf-8"), specials, pattern))
    return total


@settings(max_examples=60)
@given(text=texty, chunk=st.integers(1, 40), use_eot=st.booleans(), cl100k=st.booleans())
def test_chunked_counts_equal_whole_counts(text: str, chunk: int, use_eot: bool, cl100k: bool) -> None:
    specials = [EOT] if use_eot else []
    pattern = CL100K_PATTERN if cl100k else GPT2_PATTERN
    assert _counts_by_chunks(text, chunk, specials, pattern) == count_text(text, specials, pattern)


def test_cut_never_splits_a_special_token_containing_a_safe_cut() -> None:
    special = "<|a\nB|>"
    text = f"xx{special}yy\nZZ{special}" * 20
    assert _counts_by_chunks(text, 3, [special]) == count_text(text, [special])


def test_gutenberg_validation_chunked_equals_whole(tmp_path) -> None:
    from lmfs.paths import has_shared_data, shared_data

    if not has_shared_data("corpus", "gutenberg_valid.txt"):
        pytest.skip("needs gutenberg_valid.txt")
    path = shared_data("corpus", "gutenberg_valid.txt")
    whole = count_text(path.read_bytes()[:1_500_000].decode("utf-8", errors="ignore"), [EOT])
    part = tmp_path / "part.txt"
    part.write_bytes(path.read_bytes()[:1_500_000].decode("utf-8", errors="ignore").encode("utf-8"))
    assert count_pretokens(part, [EOT], chunk_bytes=50_000, num_workers=2) == whole


def test_a_long_line_without_newlines_is_still_cut(tmp_path) -> None:
    line = ("the quick brown fox jumps over the lazy dog, " * 60_000).encode()  # 2.7 MB, no newline
    path = tmp_path / "line.txt"
    path.write_bytes(line)
    with open(path, "rb") as f:
        bounds = chunk_boundaries(f, 256 * 1024)
    assert len(bounds) > 8  # bounded chunks, not one 2.7 MB piece
    assert max(b - a for a, b in itertools.pairwise(bounds)) < 400 * 1024
    assert count_pretokens(path, chunk_bytes=256 * 1024, num_workers=2) == count_text(line.decode())


def test_non_utf8_file_names_file_and_offset(tmp_path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not valid UTF-8 at byte offset 3"):
        count_pretokens(path)


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="corpus not found"):
        count_pretokens(os.path.join(tempfile.gettempdir(), "does-not-exist-lmfs.txt"))


def test_specials_split_longest_first() -> None:
    rx = special_regex([EOT, EOT + EOT])
    pieces = list(split_on_specials(f"a{EOT}{EOT}{EOT}b", rx))
    assert pieces == [("a", False), (EOT + EOT, True), (EOT, True), ("b", False)]
    with pytest.raises(ValueError, match="non-empty"):
        special_regex([""])


def test_gpt2_pattern_examples() -> None:
    pat = compile_pattern(GPT2_PATTERN)
    assert pat.findall("Hello world's  end\n\n") == ["Hello", " world", "'s", " ", " end", "\n\n"]
    assert compile_pattern(CL100K_PATTERN).findall("12345 HE'LL") == ["123", "45", " HE", "'LL"]


WS_PIECES = [
    " ",
    "  ",
    "\n",
    "\t",
    "\r\n",
    "\x1c",
    "\x1f",
    "\u00a0",
    "\u0085",
    "\u2028",
    "\u3000",
    "a",
    "Zz",
    "'s",
    "'",
    "1",
    ".,",
    "é",
    "🙂",
    EOT,
]


@settings(max_examples=100)
@given(text=st.lists(st.sampled_from(WS_PIECES), max_size=40).map("".join))
def test_coarse_split_gives_the_same_pretokens(text: str) -> None:
    from lmfs.tokenizer.pretokenize import coarse_pattern

    coarse = coarse_pattern(GPT2_PATTERN)
    assert coarse is not None and coarse_pattern(CL100K_PATTERN) is None
    fine = compile_pattern(GPT2_PATTERN)
    assert "".join(coarse.findall(text)) == text
    assert [t for piece in coarse.findall(text) for t in fine.findall(piece)] == fine.findall(text)


@settings(max_examples=60)
@given(
    text=st.lists(
        st.sampled_from(["x", "<|e|>", "x<|e|>", "<|e|>x", "ab cd", "\n", "Q\nR", " "]), max_size=60
    ).map("".join),
    chunk=st.integers(1, 12),
)
def test_specials_that_contain_each_other_or_cut_patterns(text: str, chunk: int) -> None:
    # "x<|e|>" ends with "<|e|>"; "<|A b|>"-like specials contain the letter-space-letter cut pattern
    specials = ["<|e|>", "x<|e|>", "ab cd", "Q\nR"]
    assert _counts_by_chunks(text, chunk, specials) == count_text(text, specials)
