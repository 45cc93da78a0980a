"""Counting pre-tokens of a (big) file in parallel: chunk at safe cuts, count each chunk in a worker, sum.

Each worker reads only its own byte range, so memory is bounded by the chunk size times the worker count plus the
table of distinct pre-tokens, never by the file size.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections import Counter
from collections.abc import Sequence

from lmfs.tokenizer.pretokenize import (
    GPT2_PATTERN,
    chunk_boundaries,
    compile_pattern,
    read_chunk,
    special_regex,
    split_on_specials,
)

DEFAULT_CHUNK_BYTES = 4 << 20


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def count_text(text: str, special_tokens: Sequence[str] = (), pattern: str = GPT2_PATTERN) -> Counter[str]:
    """Pre-token counts of one string; special tokens split the text and are not counted."""
    pat = compile_pattern(pattern)
    specials = special_regex(special_tokens)
    counts: Counter[str] = Counter()
    for piece, is_special in split_on_specials(text, specials):
        if not is_special:
            counts.update(pat.findall(piece))
    return counts


def _count_chunk(job: tuple[str, int, int, tuple[str, ...], str]) -> Counter[str]:
    path, start, end, special_tokens, pattern = job
    return count_text(read_chunk(path, start, end), special_tokens, pattern)


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: Sequence[str] = (),
    *,
    pattern: str = GPT2_PATTERN,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool = False,
) -> Counter[str]:
    """Pre-token → count for the whole file at ``path``, using ``num_workers`` processes (default: all cores).

    The result does not depend on ``num_workers`` or ``chunk_bytes``: chunks are cut only where pre-tokenization
    is guaranteed to break (see :func:`~lmfs.tokenizer.pretokenize.chunk_boundaries`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus not found: {path} (pass the path of a UTF-8 text file)")
    workers = num_workers or available_cores()
    with open(path, "rb") as f:
        bounds = chunk_boundaries(f, chunk_bytes, special_tokens)
    jobs = [(path, s, e, tuple(special_tokens), pattern) for s, e in itertools.pairwise(bounds) if e > s]
    total: Counter[str] = Counter()
    bar = _bar(progress, bounds[-1], "pre-tokenize")
    if workers == 1 or len(jobs) <= 1:
        results = map(_count_chunk, jobs)
        pool = None
    else:
        pool = mp.get_context("fork").Pool(min(workers, len(jobs)))
        results = pool.imap_unordered(_count_chunk, jobs)
    try:
        for (_, s, e, *_rest), counts in zip(jobs, results, strict=False):
            total.update(counts)
            if bar is not None:
                bar.update(e - s)  # unordered: sizes are close enough for a progress bar
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
    return total


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)
