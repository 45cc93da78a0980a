"""Deliberately naive, obviously-correct references for the tokenizer specs (written for the specs, not lmfs).

Nothing here is fast: every merge recounts every pair. That is the point: it is easy to check by reading.
"""

from __future__ import annotations

import itertools
from collections import Counter

import regex

GPT2_SPLIT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def pretoken_counts(text: str, special_tokens: list[str]) -> Counter[tuple[bytes, ...]]:
    """Split on special tokens, pre-tokenize each piece, count pre-tokens as tuples of single bytes."""
    pieces = [text]
    if special_tokens:
        alternation = "|".join(regex.escape(s) for s in sorted(special_tokens, key=len, reverse=True))
        pieces = regex.split(alternation, text)
    counts: Counter[tuple[bytes, ...]] = Counter()
    for piece in pieces:
        for tok in regex.findall(GPT2_SPLIT, piece):
            counts[tuple(bytes([x]) for x in tok.encode("utf-8"))] += 1
    return counts


def naive_train_bpe(
    text: str, vocab_size: int, special_tokens: list[str]
) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """Returns (the set of vocabulary byte strings, merges in creation order)."""
    words = pretoken_counts(text, special_tokens)
    vocab = {bytes([i]) for i in range(256)} | {s.encode("utf-8") for s in special_tokens}
    merges: list[tuple[bytes, bytes]] = []
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, n in words.items():
            for left, right in itertools.pairwise(word):
                pairs[(left, right)] += n
        if not pairs:
            break
        # highest count; among equal counts the lexicographically greatest pair
        best = max(pairs, key=lambda pair: (pairs[pair], pair))
        merges.append(best)
        vocab.add(best[0] + best[1])
        merged: Counter[tuple[bytes, ...]] = Counter()
        for word, n in words.items():
            out: list[bytes] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    return vocab, merges
