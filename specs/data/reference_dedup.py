"""Deliberately naive references for the deduplication specs: everything in memory, no hashing, no LSH.

``exact_line_dedup`` counts whole lines (terminator stripped) in a ``Counter``; ``jaccard_clusters`` compares
*every* pair of documents by exact Jaccard similarity of their word n-gram sets and clusters transitively, so it
is what MinHash + LSH approximates (and equals, on corpora whose similarities are clearly separated from the
threshold).
"""

from __future__ import annotations

import string
import unicodedata
from collections import Counter


def _split_lf(data: bytes) -> list[bytes]:
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _strip_terminator(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    return line[:-1] if line.endswith(b"\n") else line


def exact_line_dedup(files: dict[str, bytes]) -> dict[str, bytes]:
    """name -> content for every file, keeping only lines that occur exactly once in all files together."""
    counts = Counter(_strip_terminator(line) for data in files.values() for line in _split_lf(data))
    return {
        name: b"".join(line for line in _split_lf(data) if counts[_strip_terminator(line)] == 1)
        for name, data in files.items()
    }


def normalize(text: str) -> str:
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    text = text.lower()
    text = "".join(c for c in text if c not in string.punctuation)
    return " ".join(text.split())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = normalize(text).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def jaccard_clusters(docs: list[str], n: int, threshold: float) -> list[set[int]]:
    """Connected components of the graph 'exact Jaccard >= threshold' over all pairs (indices into docs)."""
    sets = [ngrams(d, n) for d in docs]
    adjacent = {i: set() for i in range(len(docs))}
    for i in range(len(docs)):
        for j in range(i + 1, len(docs)):
            if jaccard(sets[i], sets[j]) >= threshold:
                adjacent[i].add(j)
                adjacent[j].add(i)
    clusters, seen = [], set()
    for i in range(len(docs)):
        if i in seen:
            continue
        stack, comp = [i], set()
        while stack:
            k = stack.pop()
            if k not in comp:
                comp.add(k)
                stack.extend(adjacent[k] - comp)
        seen |= comp
        clusters.append(comp)
    return clusters
