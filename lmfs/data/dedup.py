"""Deduplication: exact line deduplication and MinHash + LSH fuzzy document deduplication (CS336 assignment 4).

* :func:`exact_line_deduplication` — two passes over the corpus. Pass 1 counts every line by a 16-byte BLAKE2b
  digest (memory grows with the number of *distinct* lines, not their length); pass 2 rewrites each file to
  ``output_directory/<basename>`` keeping only the lines that occur exactly once in the whole corpus.
* :func:`minhash_deduplication` — normalize each document, take its set of word n-grams, compute a MinHash
  signature, bucket the signatures with LSH (bands), verify every candidate pair with the true Jaccard
  similarity of the n-gram sets, cluster the verified pairs (union-find, so clusters are transitive) and keep one
  document per cluster: the **first in input order**. Kept files are copied byte for byte.

The MinHash work is vectorized in numpy over whole batches of documents (:class:`MinHasher`): the normalized
texts of a batch are one byte array; word hashes come from a polynomial prefix hash over it (no Python loop over
words), n-gram hashes from a polynomial over consecutive word hashes, and each of the ``num_hashes`` hash
functions is ``a_i * ngram_hash + b_i`` (mod 2^64, ``a_i`` odd; the n-gram hashes are already SplitMix-mixed)
reduced per document with ``np.minimum.reduceat``. The exact
Jaccard check runs on the sorted unique n-gram hashes (64-bit; a collision would need ~2^32 n-grams). The
pipeline's global near-dedup step (:mod:`lmfs.data.steps`) uses the same pieces: signatures per shard, then
:func:`lsh_clusters` over all of them.

The same MinHash work also exists in C (``lmfs.data._cminhash``, ``lmfs/data/csrc/minhash.c``; chosen by
:mod:`lmfs.data.native`): one pass per document from the ``str`` to its signature — normalization through a
per-code-point table built from :func:`_char_output` (which derives it from the reference's own rules), the
same word/n-gram polynomials, a radix sort, the minimum over the hash family (AVX-512 where the CPU has it) —
and the LSH loop of :func:`lsh_clusters`. The numpy code above is the reference; the results are bit-identical
(tests compare them), so signatures, partials and clusters do not depend on which backend wrote them.

Both are deterministic across runs and processes (no salted ``hash()``; the MinHash seeds are fixed).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np

from lmfs.atomic import atomic_open, atomic_path
from lmfs.data import native

__all__ = [
    "MinHasher",
    "exact_line_deduplication",
    "jaccard",
    "line_hashes",
    "lsh_clusters",
    "minhash_deduplication",
    "minhash_texts",
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


_ASCII_PUNCT = bytes(c for c in range(128) if unicodedata.category(chr(c)).startswith("P"))


def normalize_text(text: str) -> str:
    """NFD, strip combining marks (accents), lowercase, delete punctuation (Unicode category P*), collapse runs
    of whitespace to one space and trim. ``"Café, RÉSUMÉ!"`` -> ``"cafe resume"``."""
    if text.isascii():  # NFD is the identity on ASCII: delete punctuation bytewise
        text = text.encode("ascii").translate(None, _ASCII_PUNCT).decode("ascii")
    else:
        text = unicodedata.normalize("NFD", text)
        extra = "".join(sorted(c for c in set(_NON_ASCII.findall(text)) if _deleted(c)))
        text = _delete_pattern(extra).sub("", text)
    return " ".join(text.lower().split())


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@functools.lru_cache(maxsize=4096)
def _delete_pattern(extra: str) -> re.Pattern:
    """ASCII punctuation plus the document's non-ASCII marks and punctuation, as one compiled class."""
    return re.compile(f"[{re.escape(_ASCII_PUNCT.decode('ascii') + extra)}]+")
_DELETED: dict[str, bool] = {}


def _deleted(ch: str) -> bool:
    """Is ``ch`` a combining mark or punctuation (Unicode category P*)? Cached per process."""
    v = _DELETED.get(ch)
    if v is None:
        v = _DELETED[ch] = bool(unicodedata.combining(ch) or unicodedata.category(ch).startswith("P"))
    return v


def _char_output(cp: int) -> bytes | None:
    """What code point ``cp`` becomes under :func:`normalize_text`, for the C kernel's table: its NFD with
    combining marks and punctuation deleted, lowercased, as UTF-8, every whitespace character written as
    ``b" "``. Per character this is exact: NFD decomposes each character on its own and only reorders combining
    marks, which are deleted; ``str.lower`` maps each character on its own except a capital sigma (final form
    at the end of a word). ``None`` — the document is normalized by :func:`normalize_text` itself — for a
    character whose output holds a capital sigma, or that UTF-8 cannot encode (a lone surrogate: the reference
    then raises the same ``UnicodeEncodeError``)."""
    kept = "".join(c for c in unicodedata.normalize("NFD", chr(cp)) if not _deleted(c))
    if "\u03a3" in kept:
        return None
    out = "".join(" " if c.isspace() else c for c in kept.lower())
    try:
        return out.encode("utf-8")
    except UnicodeEncodeError:
        return None


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


_P = 1_000_003  # odd: invertible modulo 2**64
_P_INV = pow(_P, -1, 1 << 64)
_Q = 0x100000001B3  # combines the word hashes of an n-gram


def _powers(base: int, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    if n:
        out[0] = 1
        out[1:] = base
        with np.errstate(over="ignore"):
            np.cumprod(out, out=out)
    return out


class MinHasher:
    """MinHash signatures and n-gram hash sets for batches of documents (see the module docstring).

    ``signatures(texts) -> (sigs, grams, offsets)``: ``sigs`` is ``(len(texts), num_hashes)`` uint64 (an empty
    document gets all ones), ``grams`` the concatenated sorted unique n-gram hashes of the documents and
    ``offsets`` (length ``len(texts) + 1``) where each document's slice starts.

    ``backend``: ``"auto"`` (the C kernel when built), ``"c"`` or ``"numpy"`` (the reference); default from
    ``LMFS_DATA_BACKEND`` (:mod:`lmfs.data.native`). :attr:`backend` says which one runs.
    """

    def __init__(self, num_hashes: int, ngrams: int, chunk: int = 1 << 15, backend: str | None = None) -> None:
        if num_hashes <= 0:
            raise ValueError(f"num_hashes must be positive, got {num_hashes}")
        if ngrams <= 0:
            raise ValueError(f"ngrams must be positive, got {ngrams}")
        self.num_hashes, self.ngrams, self.chunk = num_hashes, ngrams, chunk
        seeds = _seeds(2 * num_hashes)
        # hash function i: x -> a_i * x + b_i (mod 2**64), a_i odd: multiply-add over the mixed 64-bit n-gram
        # hashes (the multiply-shift family; the minimum is decided by the well-mixed high bits)
        self.mult = (seeds[:num_hashes] | np.uint64(1))[:, None]
        self.add = seeds[num_hashes:][:, None]
        self._c = native.load_minhash(backend)
        self.backend = "c" if self._c is not None else "numpy"

    def _doc_grams(self, normalized: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unique sorted n-gram hashes per document, concatenated, with offsets."""
        n = self.ngrams
        joined = " ".join(normalized).encode("utf-8")  # documents separated by one space, like words
        b = np.frombuffer(joined, dtype=np.uint8)
        # word boundaries: positions of the separating spaces
        spaces = np.flatnonzero(b == 32)
        starts = np.concatenate(([0], spaces + 1)).astype(np.int64)
        ends = np.concatenate((spaces, [b.size])).astype(np.int64)
        with np.errstate(over="ignore"):
            pw = _powers(_P, b.size + 1)
            prefix = np.zeros(b.size + 1, dtype=np.uint64)
            np.cumsum((b.astype(np.uint64) + np.uint64(1)) * pw[:-1], out=prefix[1:])
            inv = _powers(_P_INV, b.size + 1)
            words = _mix64((prefix[ends] - prefix[starts]) * inv[starts] + (ends - starts).astype(np.uint64))
        # words per document (an empty document contributes one empty "word" between separators: drop it)
        counts = np.array([t.count(" ") + 1 if t else 0 for t in normalized], dtype=np.int64)
        word_pos = np.zeros(len(normalized) + 1, dtype=np.int64)
        # each document owns counts[i] words, empty ones own the (empty) slot between their separators
        slots = np.maximum(counts, 1)
        slot_start = np.concatenate(([0], np.cumsum(slots)))
        grams_list = []
        offsets = np.zeros(len(normalized) + 1, dtype=np.int64)
        q_pows = _powers(_Q, n)
        # vectorized n-grams over the whole batch, then masked to those inside one document
        total = words.size
        if total >= n:
            with np.errstate(over="ignore"):
                acc = np.zeros(total - n + 1, dtype=np.uint64)
                for j in range(n):
                    acc += words[j : total - n + 1 + j] * q_pows[j]
                full = _mix64(acc)
        else:
            full = np.zeros(0, dtype=np.uint64)
        del word_pos
        for i, c in enumerate(counts):
            s0 = slot_start[i]
            if c == 0:
                g = np.zeros(0, dtype=np.uint64)
            elif c < n:  # the whole (short) document is its one n-gram
                with np.errstate(over="ignore"):
                    acc1 = np.zeros(1, dtype=np.uint64)
                    for j in range(c):
                        acc1 += words[s0 + j : s0 + j + 1] * q_pows[j] * np.uint64(0x9E3779B97F4A7C15)
                    g = _mix64(acc1 + np.uint64(c))
            else:
                g = full[s0 : s0 + c - n + 1]
            grams_list.append(g)
            offsets[i + 1] = offsets[i] + g.size
        grams = np.concatenate(grams_list) if grams_list else np.zeros(0, dtype=np.uint64)
        if grams.size:  # sort and deduplicate inside each document, for the whole batch in one pass
            doc = np.repeat(np.arange(len(normalized)), np.diff(offsets))
            order = np.lexsort((grams, doc))
            grams, doc = grams[order], doc[order]
            keep = np.ones(grams.size, dtype=bool)
            keep[1:] = (grams[1:] != grams[:-1]) | (doc[1:] != doc[:-1])
            grams, doc = grams[keep], doc[keep]
            offsets = np.concatenate(([0], np.cumsum(np.bincount(doc, minlength=len(normalized))))).astype(np.int64)
        return grams, offsets

    def signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._c is not None:
            sigs, grams, offsets = self._c.hash_documents(
                list(texts), self.mult.ravel(), self.add.ravel(), self.ngrams, _char_output, normalize_text
            )
            return (
                np.frombuffer(sigs, dtype=np.uint64).reshape(-1, self.num_hashes),
                np.frombuffer(grams, dtype=np.uint64),
                np.frombuffer(offsets, dtype=np.int64),
            )
        normalized = [normalize_text(t) for t in texts]
        grams, offsets = self._doc_grams(normalized)
        sigs = np.full((len(texts), self.num_hashes), np.uint64(_MASK64), dtype=np.uint64)
        nonempty = np.flatnonzero(offsets[1:] > offsets[:-1])
        if nonempty.size:
            # process documents in groups whose n-grams fit one chunk (a huge document is its own group)
            i = 0
            while i < nonempty.size:
                j = i + 1
                while j < nonempty.size and offsets[nonempty[j] + 1] - offsets[nonempty[i]] <= self.chunk:
                    j += 1
                docs = nonempty[i:j]
                lo, hi = offsets[docs[0]], offsets[docs[-1] + 1]
                seg = grams[lo:hi]
                rel = offsets[docs] - lo
                with np.errstate(over="ignore"):
                    h = seg[None, :] * self.mult
                    h += self.add
                sigs[docs] = np.minimum.reduceat(h, rel, axis=1).T
                i = j
        return sigs, grams, offsets


def _band_keys(sigs: np.ndarray, num_bands: int) -> np.ndarray:
    """One uint64 key per (document, band): the band's rows mixed together."""
    n, h = sigs.shape
    rows = h // num_bands
    view = sigs.reshape(n, num_bands, rows)
    with np.errstate(over="ignore"):
        key = np.zeros((n, num_bands), dtype=np.uint64)
        for r in range(rows):
            key = _mix64(key ^ view[:, :, r]) + np.uint64(r + 1)
    return key


def _exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0 and b.size == 0:
        return 1.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def lsh_clusters(
    sigs: np.ndarray,
    grams: np.ndarray,
    offsets: np.ndarray,
    num_bands: int,
    jaccard_threshold: float,
    backend: str | None = None,
) -> np.ndarray:
    """Cluster roots (``root[i] == i`` for kept documents; else the index of the first document of its cluster)
    from LSH candidates verified by the exact Jaccard of the n-gram hash sets. ``grams`` may be a memory map.
    ``backend`` as for :class:`MinHasher` (the C loop gives the same roots)."""
    c = native.load_minhash(backend)
    if c is not None:
        sigs = np.ascontiguousarray(sigs, dtype=np.uint64)
        n, h = sigs.shape
        roots = c.lsh_roots(
            sigs, n, h, np.ascontiguousarray(grams, dtype=np.uint64),
            np.ascontiguousarray(offsets, dtype=np.int64), num_bands, float(jaccard_threshold),
        )
        return np.frombuffer(roots, dtype=np.int64)
    n = sigs.shape[0]
    uf = _UnionFind(n)
    if n < 2:
        return np.arange(n)
    keys = _band_keys(sigs, num_bands)
    cache: dict[int, np.ndarray] = {}

    def gram_set(i: int) -> np.ndarray:
        g = cache.get(i)
        if g is None:
            g = cache[i] = np.asarray(grams[offsets[i] : offsets[i + 1]])
        return g

    for band in range(num_bands):
        col = keys[:, band]
        order = np.argsort(col, kind="stable")
        sorted_keys = col[order]
        boundaries = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
        groups = np.split(order, boundaries)
        for members in groups:
            if members.size < 2:
                continue
            members = np.sort(members)
            for a in range(members.size):
                for b in range(a + 1, members.size):
                    i, j = int(members[a]), int(members[b])
                    if uf.find(i) != uf.find(j) and _exact_jaccard(gram_set(i), gram_set(j)) >= jaccard_threshold:
                        uf.union(i, j)
    return np.array([uf.find(i) for i in range(n)], dtype=np.int64)


def line_hashes(lines: list[str]) -> np.ndarray:
    """64-bit BLAKE2b digest of each line (UTF-8), as uint64: the keys of the pipeline's exact-line dedup."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(x.encode("utf-8"), digest_size=8).digest(), "little") for x in lines),
        dtype=np.uint64,
        count=len(lines),
    )


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


def _check_params(num_hashes: int, num_bands: int, ngrams: int, jaccard_threshold: float) -> None:
    if num_hashes <= 0 or num_bands <= 0:
        raise ValueError(f"num_hashes and num_bands must be positive, got {num_hashes} and {num_bands}")
    if num_hashes % num_bands:
        raise ValueError(f"num_hashes ({num_hashes}) must be divisible by num_bands ({num_bands})")
    if ngrams <= 0:
        raise ValueError(f"ngrams must be positive, got {ngrams}")
    if not 0.0 <= jaccard_threshold <= 1.0:
        raise ValueError(f"jaccard_threshold must be in [0, 1], got {jaccard_threshold}")


def minhash_texts(
    texts: list[str],
    num_hashes: int,
    num_bands: int,
    ngrams: int,
    jaccard_threshold: float,
    backend: str | None = None,
) -> np.ndarray:
    """Cluster roots for a list of texts (``root[i] == i``: keep document ``i``); ``backend`` as for
    :class:`MinHasher`."""
    _check_params(num_hashes, num_bands, ngrams, jaccard_threshold)
    sigs, grams, offsets = MinHasher(num_hashes, ngrams, backend=backend).signatures(texts)
    return lsh_clusters(sigs, grams, offsets, num_bands, jaccard_threshold, backend=backend)


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
    _check_params(num_hashes, num_bands, ngrams, jaccard_threshold)
    paths = _check_inputs(input_files)
    texts = [p.read_bytes().decode("utf-8", errors="replace") for p in paths]
    roots = minhash_texts(texts, num_hashes, num_bands, ngrams, jaccard_threshold)

    out_dir = Path(output_directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for i, p in enumerate(paths):
        if roots[i] == i:
            target = out_dir / p.name
            if target.resolve() != p.resolve():
                with atomic_path(target) as tmp:
                    shutil.copyfile(p, tmp)
            outputs.append(target)
    return outputs
