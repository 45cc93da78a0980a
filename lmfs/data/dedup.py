"""Deduplication: exact line deduplication and MinHash + LSH fuzzy document deduplication (CS336 assignment 4).

* :func:`exact_line_deduplication` — two passes over the corpus. Pass 1 counts every line by a 16-byte BLAKE2b
  digest (memory grows with the number of *distinct* lines, not their length); pass 2 rewrites each file to
  ``output_directory/<basename>`` keeping only the lines that occur exactly once in the whole corpus.
* :func:`minhash_deduplication` — normalize each document, take its set of word n-grams, compute a MinHash
  signature, bucket the signatures with LSH (bands), verify every candidate pair with the true Jaccard
  similarity of the n-gram sets, cluster the verified pairs (union-find, so clusters are transitive) and keep one
  document per cluster: the **first in input order**. Kept files are copied byte for byte.

Both are deterministic across runs and processes (no salted ``hash()``; the MinHash seeds are fixed).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np

from lmfs.atomic import atomic_open, atomic_path

__all__ = [
    "exact_line_deduplication",
    "jaccard",
    "minhash_deduplication",
    "minhash_signature",
    "ngram_set",
    "normalize_text",
]

_MASK64 = (1 << 64) - 1


# ----------------------------------------------------------------------------------------------- shared


def _check_inputs(input_files: list[str | os.PathLike]) -> list[Path]:
    """Resolve the inputs; fail before writing anything on a missing file or a repeated basename."""
    paths = [Path(p) for p in input_files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"deduplication input file(s) not found: {', '.join(missing)}")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.name in seen:
            raise ValueError(
                f"two input files share the basename {p.name!r} ({seen[p.name]} and {p}); "
                "outputs are written as output_directory/<basename>"
            )
        seen[p.name] = p
    return paths


def _line_key(line: bytes) -> bytes:
    """Digest of a line without its terminator (``\\n`` or ``\\r\\n``): a last line lacking its newline counts
    as the same line as one that has it."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return hashlib.blake2b(line, digest_size=16).digest()


# ----------------------------------------------------------------------------------------------- exact lines


def exact_line_deduplication(
    input_files: list[str | os.PathLike], output_directory: str | os.PathLike
) -> list[Path]:
    """Keep only the lines that occur exactly once across all ``input_files``.

    Lines are compared as bytes without their terminator. Empty lines are lines like any other: a blank line
    that occurs more than once in the corpus is removed too (as in CS336). Each input is rewritten, with the
    surviving lines in their original order and with their original terminators, to
    ``output_directory/<basename>`` (the folder is created; each output is written to a temp file and moved into
    place, so the output folder may be the input folder). Returns the output paths in input order.
    """
    paths = _check_inputs(input_files)
    counts: dict[bytes, int] = defaultdict(int)
    for p in paths:
        with open(p, "rb") as f:
            for line in f:
                counts[_line_key(line)] += 1

    out_dir = Path(output_directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for p in paths:
        target = out_dir / p.name
        with atomic_open(target, "wb") as out, open(p, "rb") as f:
            for line in f:
                if counts[_line_key(line)] == 1:
                    out.write(line)
        outputs.append(target)
    return outputs


# ----------------------------------------------------------------------------------------------- MinHash


_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFD, strip combining marks (accents), lowercase, delete punctuation (Unicode category P*), collapse runs
    of whitespace to one space and trim. ``"Café, RÉSUMÉ!"`` -> ``"cafe resume"``."""
    text = unicodedata.normalize("NFD", text)
    text = "".join(
        c for c in text if not unicodedata.combining(c) and not unicodedata.category(c).startswith("P")
    )
    return _WS.sub(" ", text.lower()).strip()


def ngram_set(text: str, n: int) -> set[str]:
    """The set of word n-grams (words joined by one space) of the normalized ``text``. A document with fewer
    than ``n`` words (but at least one) has one n-gram, its whole text; an empty document has none."""
    words = normalize_text(text).split(" ") if text else []
    words = [w for w in words if w]
    if not words:
        return set()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set, b: set) -> float:
    """|a ∩ b| / |a ∪ b|; two empty sets (documents with no words) count as identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer on uint64 arrays (wrap-around multiplication is intended)."""
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _seeds(num_hashes: int) -> np.ndarray:
    """Fixed per-hash-function seeds (SplitMix64 stream from a constant), identical in every process."""
    with np.errstate(over="ignore"):
        idx = np.arange(1, num_hashes + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        return _mix64(idx + np.uint64(0x6C6D66732D646564))


def minhash_signature(ngrams: set[str], num_hashes: int, chunk: int = 4096) -> np.ndarray:
    """MinHash signature (uint64, shape ``(num_hashes,)``): hash function ``i`` is
    ``mix64(blake2b64(ngram) ^ seed_i)``. An empty set gets the all-ones signature."""
    sig = np.full(num_hashes, np.uint64(_MASK64), dtype=np.uint64)
    if not ngrams:
        return sig
    base = np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(g.encode("utf-8"), digest_size=8).digest(), "little")
            for g in ngrams
        ),
        dtype=np.uint64,
        count=len(ngrams),
    )
    seeds = _seeds(num_hashes)[:, None]
    with np.errstate(over="ignore"):
        for start in range(0, base.size, chunk):
            h = _mix64(base[None, start : start + chunk] ^ seeds)
            np.minimum(sig, h.min(axis=1), out=sig)
    return sig


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:  # the smaller index becomes the root: the root is the first document of its cluster
            self.parent[max(ri, rj)] = min(ri, rj)


def minhash_deduplication(
    input_files: list[str | os.PathLike],
    num_hashes: int,
    num_bands: int,
    ngrams: int,
    jaccard_threshold: float,
    output_directory: str | os.PathLike,
) -> list[Path]:
    """Fuzzy document deduplication with MinHash + LSH.

    Candidate pairs are documents whose signatures agree on every row of at least one of ``num_bands`` bands
    (``num_hashes / num_bands`` rows each). A candidate pair is a duplicate when the true Jaccard similarity of
    the two n-gram sets is ``>= jaccard_threshold``. Duplicates are clustered transitively (A~B and B~C puts A, B
    and C together even when A and C are not similar); from each cluster the document that comes first in
    ``input_files`` is kept and copied unchanged to ``output_directory/<basename>``. Documents are read as UTF-8
    (undecodable bytes replaced) for comparison only. Returns the written paths in input order.
    """
    if num_hashes <= 0 or num_bands <= 0:
        raise ValueError(f"num_hashes and num_bands must be positive, got {num_hashes} and {num_bands}")
    if num_hashes % num_bands:
        raise ValueError(f"num_hashes ({num_hashes}) must be divisible by num_bands ({num_bands})")
    if ngrams <= 0:
        raise ValueError(f"ngrams must be positive, got {ngrams}")
    if not 0.0 <= jaccard_threshold <= 1.0:
        raise ValueError(f"jaccard_threshold must be in [0, 1], got {jaccard_threshold}")
    paths = _check_inputs(input_files)

    sets = [ngram_set(p.read_bytes().decode("utf-8", errors="replace"), ngrams) for p in paths]
    rows = num_hashes // num_bands
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        sig = minhash_signature(s, num_hashes)
        for band in range(num_bands):
            buckets[band, sig[band * rows : (band + 1) * rows].tobytes()].append(i)

    uf = _UnionFind(len(paths))
    for members in buckets.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                i, j = members[a], members[b]
                # Already in one cluster: the union would change nothing, so skip the Jaccard computation.
                if uf.find(i) != uf.find(j) and jaccard(sets[i], sets[j]) >= jaccard_threshold:
                    uf.union(i, j)

    out_dir = Path(output_directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for i, p in enumerate(paths):
        if uf.find(i) == i:
            target = out_dir / p.name
            if target.resolve() != p.resolve():
                with atomic_path(target) as tmp:
                    shutil.copyfile(p, tmp)
            outputs.append(target)
    return outputs
