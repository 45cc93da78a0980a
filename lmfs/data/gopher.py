"""The Gopher quality rules (Rae et al. 2021, as used in CS336 assignment 4).

A document passes when all of these hold:

* it has between 50 and 100,000 words (inclusive);
* the mean word length is in [3, 10] characters (inclusive);
* at most 30% of its lines end with an ellipsis (``...`` or ``…``, after trailing whitespace);
* at least 80% of its words contain at least one alphabetic character (``str.isalpha``, so any script).

Words are whitespace-separated tokens (punctuation stays attached); lines are ``str.splitlines()``.
"""

from __future__ import annotations

__all__ = ["gopher_failure", "gopher_quality_filter", "gopher_stats"]

MIN_WORDS, MAX_WORDS = 50, 100_000
MIN_MEAN_LEN, MAX_MEAN_LEN = 3.0, 10.0
MAX_ELLIPSIS_LINES = 0.3
MIN_ALPHA_WORDS = 0.8


def gopher_stats(text: str) -> dict[str, float]:
    words = text.split()
    lines = text.splitlines()
    n = len(words)
    return {
        "words": n,
        "mean_word_length": sum(map(len, words)) / n if n else 0.0,
        "ellipsis_line_fraction": (
            sum(1 for line in lines if line.rstrip().endswith(("...", "…"))) / len(lines) if lines else 0.0
        ),
        "alpha_word_fraction": sum(1 for w in words if any(c.isalpha() for c in w)) / n if n else 0.0,
    }


def gopher_quality_filter(text: str) -> bool:
    s = gopher_stats(text)
    return (
        MIN_WORDS <= s["words"] <= MAX_WORDS
        and MIN_MEAN_LEN <= s["mean_word_length"] <= MAX_MEAN_LEN
        and s["ellipsis_line_fraction"] <= MAX_ELLIPSIS_LINES
        and s["alpha_word_fraction"] >= MIN_ALPHA_WORDS
    )


def gopher_failure(text: str) -> str | None:
    """The name of the first Gopher rule ``text`` fails (``too_few_words``, ``too_many_words``,
    ``mean_word_length``, ``ellipsis_lines``, ``non_alpha_words``), or None when it passes them all."""
    s = gopher_stats(text)
    if s["words"] < MIN_WORDS:
        return "too_few_words"
    if s["words"] > MAX_WORDS:
        return "too_many_words"
    if not MIN_MEAN_LEN <= s["mean_word_length"] <= MAX_MEAN_LEN:
        return "mean_word_length"
    if s["ellipsis_line_fraction"] > MAX_ELLIPSIS_LINES:
        return "ellipsis_lines"
    if s["alpha_word_fraction"] < MIN_ALPHA_WORDS:
        return "non_alpha_words"
    return None
