"""Byte-level BPE training: parallel pre-token counting, then a merge loop with incremental pair counts.

The merge loop never rescans all pairs. It keeps

* ``pair_count``: pair → frequency over the corpus (pre-token frequency × occurrences);
* ``where``: pair → ids of the distinct pre-tokens that (may) contain it;
* a heap of ``(-count, tie_key, pair)`` with *lazy invalidation*: an entry whose count is stale is re-pushed with
  the current count when it reaches the top, so only increases need a push.

Merging pair ``(a, b)`` into ``c`` touches only the pre-tokens in ``where[(a, b)]``: around each merge site the
pairs ``(prev, a)``/``(b, next)`` lose the pre-token's frequency and ``(prev, c)``/``(c, next)`` gain it.

Ties are broken towards the lexicographically greater pair of byte strings. ``tie_key`` turns that into a
min-heap order: :func:`_reverse_key` maps a token to bytes whose order is the reverse of the tokens' order
(a prefix sorts after its extensions), and a pair's key is the concatenation of its two tokens' keys.

The loop exists twice: :func:`_train_from_counts_python` is the readable reference written out above;
``lmfs.tokenizer._cmerge`` (``csrc/merge.c``) is the same algorithm in C (an indexed heap instead of the lazy
one, the same selection rule), used when it is built (see :mod:`lmfs.tokenizer.native` for the switch). Both
return identical merges; ``tests/tokenizer/test_merge_native.py`` checks that.
"""

from __future__ import annotations

import heapq
import numbers
import os
import resource
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from lmfs.tokenizer import native
from lmfs.tokenizer.counting import count_pretokens
from lmfs.tokenizer.pretokenize import GPT2_PATTERN, MAX_PRETOKEN_BYTES, cap_pretokens, check_special_list

Vocab = dict[int, bytes]
Merges = list[tuple[bytes, bytes]]


@dataclass
class TrainStats:
    """What a training run cost."""

    pretokenize_s: float = 0.0
    merge_s: float = 0.0
    distinct_pretokens: int = 0
    num_merges: int = 0
    peak_rss_mb: float = 0.0  # this process
    peak_worker_rss_mb: float = 0.0  # the largest pre-tokenization worker
    extra: dict = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.pretokenize_s + self.merge_s


def _peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def _reverse_key(token: bytes) -> bytes:
    """A sort key that reverses the lexicographic order of byte strings, prefixes included.

    Each byte ``x`` becomes ``01 (255 - x)`` and the string ends with ``02``, which sorts after any byte, so a
    prefix sorts *after* its extensions. Keys of two tokens concatenate into the key of the pair.
    """
    return b"".join([_REV[x] for x in token]) + b"\x02"


_REV = [bytes([1, 255 - x]) for x in range(256)]


def check_settings(vocab_size: int, special_tokens: Sequence[str]) -> list[str]:
    """Validate training settings; returns the special tokens deduplicated (first occurrence kept)."""
    specials = list(dict.fromkeys(check_special_list(special_tokens)))
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it must hold the 256 byte tokens plus {len(specials)} special "
            f"token(s), i.e. at least {256 + len(specials)}"
        )
    return specials


def base_vocab(special_tokens: Sequence[str]) -> Vocab:
    """Ids 0-255 are the single bytes; the special tokens follow (so their ids do not depend on vocab size)."""
    vocab: Vocab = {i: bytes([i]) for i in range(256)}
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab


def train_bpe(
    input_path: str | os.PathLike,
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    *,
    pattern: str = GPT2_PATTERN,
    num_workers: int | None = None,
    progress: bool = False,
    stats: TrainStats | None = None,
    backend: str | None = None,
    max_pretoken_bytes: int = MAX_PRETOKEN_BYTES,
) -> tuple[Vocab, Merges]:
    """Train a byte-level BPE tokenizer on the UTF-8 text file ``input_path``.

    Returns ``(vocab, merges)``: ``vocab`` maps id → bytes (256 bytes, then specials, then one token per merge,
    ``len(vocab) <= vocab_size``; fewer when the corpus runs out of pairs), ``merges`` lists the merged pairs in
    creation order. Pass a :class:`TrainStats` to get timings and peak memory. ``backend`` (``auto``, ``c``,
    ``python``; default ``$LMFS_TOKENIZER_BACKEND``) picks the implementation of pre-token counting and of
    the merge loop. Pre-tokens longer than ``max_pretoken_bytes`` are cut into pieces of at most that many bytes
    (:func:`~lmfs.tokenizer.pretokenize.cap_pretokens`), which bounds both token length and the merge loop's
    memory on adversarial input.
    """
    specials = check_settings(vocab_size, special_tokens)
    stats = stats if stats is not None else TrainStats()
    t0 = time.perf_counter()
    counts = count_pretokens(
        input_path,
        specials,
        pattern=pattern,
        num_workers=num_workers,
        progress=progress,
        as_bytes=True,
        backend=backend,
    )
    stats.pretokenize_s = time.perf_counter() - t0
    stats.distinct_pretokens = len(counts)
    t1 = time.perf_counter()
    cmerge = native.load("_cmerge", backend)
    stats.extra["backend"] = "python" if cmerge is None else "c"
    vocab, merges = train_from_counts(
        counts,
        vocab_size,
        specials,
        progress=progress,
        backend="python" if cmerge is None else "c",
        max_pretoken_bytes=max_pretoken_bytes,
    )
    stats.merge_s = time.perf_counter() - t1
    stats.num_merges = len(merges)
    stats.peak_rss_mb = _peak_rss_mb(resource.RUSAGE_SELF)
    stats.peak_worker_rss_mb = _peak_rss_mb(resource.RUSAGE_CHILDREN)
    return vocab, merges


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="merges", unit="merge", leave=False)


def train_from_counts(
    counts: Mapping[str, int] | Mapping[bytes, int],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    *,
    progress: bool = False,
    backend: str | None = None,
    max_pretoken_bytes: int = MAX_PRETOKEN_BYTES,
) -> tuple[Vocab, Merges]:
    """BPE merges from a table of pre-token counts (keys are str, encoded as UTF-8, or bytes); pre-tokens longer
    than ``max_pretoken_bytes`` are cut into pieces first (see :func:`train_bpe`).

    ``backend``: ``auto`` (C when built), ``c`` (C or an error), ``python``; default ``$LMFS_TOKENIZER_BACKEND``.
    """
    bad = next((f for f in counts.values() if not isinstance(f, numbers.Integral)), None)
    if bad is not None:
        raise TypeError(f"pre-token counts must be integers, got {type(bad).__name__} {bad!r}")
    counts = cap_pretokens(counts, max_pretoken_bytes)
    cmerge = native.load("_cmerge", backend)
    if cmerge is None:
        return _train_from_counts_python(counts, vocab_size, special_tokens, progress=progress)
    specials = check_settings(vocab_size, special_tokens)
    vocab = base_vocab(specials)
    num_merges = vocab_size - len(vocab)
    words: list[bytes] = []
    freqs: list[int] = []
    for tok, f in counts.items():
        b = tok.encode("utf-8") if isinstance(tok, str) else tok
        if len(b) > 1 and f > 0:  # single bytes never take part in a merge
            words.append(b)
            freqs.append(f)
    bar = _progress_bar(progress, num_merges)
    try:
        pairs = cmerge.merge(
            words, freqs, min(num_merges, 2**62), len(vocab), None if bar is None else bar.update
        )
    except OverflowError:  # counts beyond 64 bits: only Python's ints hold them
        pairs = None
    finally:
        if bar is not None:
            bar.close()
    if pairs is None:
        return _train_from_counts_python(counts, vocab_size, special_tokens, progress=progress)
    merges: Merges = []
    for a, b in pairs:
        left, right = vocab[a], vocab[b]
        vocab[len(vocab)] = left + right
        merges.append((left, right))
    return vocab, merges


def _train_from_counts_python(
    counts: Mapping[str, int] | Mapping[bytes, int],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    *,
    progress: bool = False,
) -> tuple[Vocab, Merges]:
    """The pure-Python merge loop (the reference the C loop is tested against)."""
    specials = check_settings(vocab_size, special_tokens)
    vocab = base_vocab(specials)
    num_merges = vocab_size - len(vocab)
    K = vocab_size  # pair (a, b) is stored as the int a * K + b: cheaper to hash than a tuple

    # distinct pre-tokens as lists of token ids; single bytes can never take part in a merge
    words: list[list[int]] = []
    freqs: list[int] = []
    for tok, f in counts.items():
        b = tok.encode("utf-8") if isinstance(tok, str) else tok
        if len(b) > 1 and f > 0:
            words.append(list(b))
            freqs.append(f)

    pair_count: dict[int, int] = defaultdict(int)
    where: dict[int, set[int]] = defaultdict(set)
    for wi, w in enumerate(words):
        f = freqs[wi]
        for j in range(len(w) - 1):
            k = w[j] * K + w[j + 1]
            pair_count[k] += f
            where[k].add(wi)

    tok_key: dict[int, bytes] = {i: _reverse_key(bytes([i])) for i in range(256)}

    def heap_entry(k: int, c: int) -> tuple[int, bytes, int]:
        a, b = divmod(k, K)
        return (-c, tok_key[a] + tok_key[b], k)

    heap = [heap_entry(k, c) for k, c in pair_count.items()]
    heapq.heapify(heap)

    merges: Merges = []
    bar = _progress_bar(progress, num_merges)
    heappop, heappush = heapq.heappop, heapq.heappush
    new_id = len(vocab)
    while len(merges) < num_merges and heap:
        negc, _, k = heappop(heap)
        c_now = pair_count.get(k, 0)
        if (
            c_now != -negc or c_now <= 0
        ):  # stale entry: re-queue with the current count (counts only drop between pushes)
            if c_now > 0:
                heappush(heap, heap_entry(k, c_now))
            continue
        a, b = divmod(k, K)
        c = new_id
        new_id += 1
        vocab[c] = vocab[a] + vocab[b]
        tok_key[c] = _reverse_key(vocab[c])
        merges.append((vocab[a], vocab[b]))
        grown: set[int] = set()  # pairs with c whose count rose: pushed once, after all words

        for wi in where.pop(k, ()):
            w = words[wi]
            if a not in w:  # stale membership: an earlier merge already consumed this pair here
                continue
            f = freqs[wi]
            n = len(w)
            nw: list[int] = []
            i = 0
            while i < n:
                x = w[i]
                if x == a and i + 1 < n and w[i + 1] == b:
                    if nw:
                        p = nw[-1]
                        pair_count[p * K + a] -= f
                        kk = p * K + c
                        pair_count[kk] += f
                        where[kk].add(wi)
                        grown.add(kk)
                    if i + 2 < n:
                        nx = w[i + 2]
                        pair_count[b * K + nx] -= f
                        kk = c * K + nx
                        pair_count[kk] += f
                        where[kk].add(wi)
                        grown.add(kk)
                    nw.append(c)
                    i += 2
                else:
                    nw.append(x)
                    i += 1
            if len(nw) != n:
                words[wi] = nw
        pair_count.pop(k, None)
        for kk in grown:
            if pair_count[kk] > 0:  # (c, x) can rise and fall back to 0 within one pre-token ("abab")
                heappush(heap, heap_entry(kk, pair_count[kk]))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return vocab, merges
