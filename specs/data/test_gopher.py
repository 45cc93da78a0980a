"""Specs for the Gopher quality filter: each rule checked on both sides of its boundary.

Rules (CS336 / Rae et al. 2021): 50 ≤ words ≤ 100,000; mean word length in [3, 10]; at most 30% of lines end with
"..."; at least 80% of words contain an alphabetic character. The documents are built from plain space-separated
words (no punctuation except where a rule needs it), ten words to a line, so any reasonable tokenizer agrees on the
counts, and every rule other than the one under test holds with a margin.
"""

from __future__ import annotations

import pytest


def doc(words: list[str], per_line: int = 10) -> str:
    return "\n".join(" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line))


def word(length: int, i: int = 0) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return "".join(letters[(i + k) % 26] for k in range(length))


def uniform(n: int, length: int = 5) -> list[str]:
    return [word(length, i) for i in range(n)]


PROSE = (
    "The harbour town woke slowly under a grey sky. Fishermen hauled their nets onto the quay while gulls "
    "circled above the masts, and the baker on the corner opened his shutters to let the smell of fresh bread "
    "drift into the street. Children ran past the chapel on their way to school, laughing at a dog that chased "
    "its own tail. By noon the fog had lifted, the ferry had come and gone, and the market square was full of "
    "traders selling apples, cheese, wool and tin pots to anyone who would stop and listen."
)


@pytest.mark.points(1)
def test_gopher_accepts_ordinary_prose_and_rejects_empty(adapter):
    assert adapter.run_gopher_quality_filter(PROSE)
    assert not adapter.run_gopher_quality_filter("")


@pytest.mark.points(2)
def test_gopher_word_count_bounds(adapter):
    f = adapter.run_gopher_quality_filter
    assert not f(doc(uniform(49))), "49 words: too short"
    assert f(doc(uniform(50))), "50 words: long enough"
    assert f(doc(uniform(100_000), per_line=100)), "100,000 words: allowed"
    assert not f(doc(uniform(100_001), per_line=100)), "100,001 words: too long"


@pytest.mark.points(2)
def test_gopher_mean_word_length_bounds(adapter):
    f = adapter.run_gopher_quality_filter
    assert not f(doc(uniform(90, 3) + uniform(10, 2))), "mean length 2.9"
    assert f(doc(uniform(100, 3))), "mean length 3.0"
    assert f(doc(uniform(100, 10))), "mean length 10.0"
    assert not f(doc(uniform(90, 10) + uniform(10, 11))), "mean length 10.1"


@pytest.mark.points(2)
def test_gopher_ellipsis_line_fraction(adapter):
    """Ten lines of twelve words; the last word of the first k lines ends with '...': 3/10 passes, 4/10 fails."""

    def lines(k: int) -> str:
        out = []
        for i in range(10):
            ws = uniform(12, 5)
            if i < k:
                ws[-1] += "..."
            out.append(" ".join(ws))
        return "\n".join(out)

    f = adapter.run_gopher_quality_filter
    assert f(lines(0))
    assert f(lines(3)), "30% of lines end with an ellipsis: allowed"
    assert not f(lines(4)), "40% of lines end with an ellipsis: rejected"
    assert not f(lines(10))


@pytest.mark.points(2)
def test_gopher_alphabetic_word_fraction(adapter):
    """100 words of length 4, some all digits: 80 alphabetic passes, 79 fails."""

    def mixed(alpha: int) -> str:
        ws = uniform(alpha, 4) + [str(1000 + i) for i in range(100 - alpha)]
        return doc(ws)

    f = adapter.run_gopher_quality_filter
    assert f(mixed(100))
    assert f(mixed(80)), "80% of words have a letter: allowed"
    assert not f(mixed(79)), "79% of words have a letter: rejected"
    assert not f(mixed(0))


@pytest.mark.points(1)
def test_gopher_word_with_a_letter_and_digits_counts_as_alphabetic(adapter):
    """'a123' has an alphabetic character; 50 of them next to 50 letter words pass the 80% rule."""
    ws = [f"a{100 + i}" for i in range(50)] + uniform(50, 4)
    assert adapter.run_gopher_quality_filter(doc(ws))
