"""Counting pre-tokens of a (big) file in parallel: chunk at safe cuts, count each chunk in a worker, sum.

Each worker reads only its own byte range, so memory is bounded by the chunk size times the worker count plus the
table of distinct pre-tokens, never by the file size.

With GPT-2's pattern and the C extension built (see :mod:`lmfs.tokenizer.native`), each worker process scans
UTF-8 bytes and accumulates one C hash table over all the chunks it takes from a shared queue; the parent merges
the workers' tables (one per worker) at the end. Other patterns, or ``LMFS_TOKENIZER_BACKEND=python``, use the
pure-Python code (``regex.findall`` per chunk, ``Counter.update`` in the parent). The counts are the same.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import pickle
import queue
from collections import Counter
from collections.abc import Sequence

from lmfs.tokenizer import native
from lmfs.tokenizer.pretokenize import (
    GPT2_PATTERN,
    chunk_boundaries,
    compile_pattern,
    read_chunk,
    special_regex,
    split_on_specials,
)

DEFAULT_CHUNK_BYTES = 4 << 20
#: the C kernels scan ~100-150 MB/s per process: by default (``num_workers=None``) a worker process is started
#: per this many bytes at most, so small files skip the start-up of processes
C_BYTES_PER_WORKER = 8 << 20


def native_workers(num_workers: int | None, size: int) -> int:
    """Processes for ``size`` bytes through the C kernels: ``num_workers`` when given, else all cores but at most
    one per :data:`C_BYTES_PER_WORKER` bytes."""
    if num_workers is not None:
        return num_workers or available_cores()
    return max(1, min(available_cores(), -(-size // C_BYTES_PER_WORKER)))


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks / container limits)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def read_utf8_chunk(path: str | os.PathLike, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of ``path``, checked to be UTF-8 (the error of
    :func:`~lmfs.tokenizer.pretokenize.read_chunk` otherwise)."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        read_chunk(path, start, end)  # raises the error naming the file and offset
        raise
    return data


def _ctext_for(pattern: str, backend: str | None = None):
    """The C module when it can count ``pattern`` (GPT-2's), else None."""
    return native.load_ctext(backend) if pattern == GPT2_PATTERN else None


def _check_specials(special_tokens: Sequence[str]) -> list[bytes]:
    if any(s == "" for s in special_tokens):
        raise ValueError("special tokens must be non-empty strings (got '')")
    return [s.encode("utf-8") for s in dict.fromkeys(special_tokens)]


def count_text(
    text: str, special_tokens: Sequence[str] = (), pattern: str = GPT2_PATTERN, *, backend: str | None = None
) -> Counter[str]:
    """Pre-token counts of one string; special tokens split the text and are not counted."""
    mod = _ctext_for(pattern, backend)
    if mod is not None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: the pure-Python path
            pass
        else:
            counter = mod.Counter(_check_specials(special_tokens))
            counter.feed(data)
            return counter.to_dict(Counter(), str_keys=True)
    pat = compile_pattern(pattern)
    specials = special_regex(special_tokens)
    counts: Counter[str] = Counter()
    for piece, is_special in split_on_specials(text, specials):
        if not is_special:
            counts.update(pat.findall(piece))
    return counts


def _count_chunk(job: tuple[str, int, int, tuple[str, ...], str, str | None]) -> Counter[str]:
    path, start, end, special_tokens, pattern, backend = job
    return count_text(read_chunk(path, start, end), special_tokens, pattern, backend=backend)


def count_pretokens(
    path: str | os.PathLike,
    special_tokens: Sequence[str] = (),
    *,
    pattern: str = GPT2_PATTERN,
    num_workers: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: bool = False,
    as_bytes: bool = False,
    backend: str | None = None,
) -> Counter[str] | Counter[bytes]:
    """Pre-token → count for the whole file at ``path``, using ``num_workers`` processes (default: all cores).

    The result does not depend on ``num_workers`` or ``chunk_bytes``: chunks are cut only where pre-tokenization
    is guaranteed to break (see :func:`~lmfs.tokenizer.pretokenize.chunk_boundaries`). Keys are ``str``, or the
    UTF-8 ``bytes`` with ``as_bytes``. ``backend`` overrides ``LMFS_TOKENIZER_BACKEND``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"corpus not found: {path} (pass the path of a UTF-8 text file)")
    workers = num_workers or available_cores()
    with open(path, "rb") as f:
        bounds = chunk_boundaries(f, chunk_bytes, special_tokens)
    mod = _ctext_for(pattern, backend)
    if mod is not None:
        spans = [(s, e) for s, e in itertools.pairwise(bounds) if e > s]
        workers = native_workers(num_workers, bounds[-1])
        return _count_native(mod, path, spans, _check_specials(special_tokens), workers, progress, as_bytes)
    jobs = [
        (path, s, e, tuple(special_tokens), pattern, backend) for s, e in itertools.pairwise(bounds) if e > s
    ]
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
    if as_bytes:
        return Counter({k.encode("utf-8"): v for k, v in total.items()})
    return total


# ----------------------------------------------------------------------------------------------- C backend

_PROGRESS, _DONE, _ERROR = "progress", "done", "error"


def _native_worker(mod, path: str, specials: list[bytes], tasks, results) -> None:
    """A worker process: count the chunks taken from ``tasks`` into one table; send it when ``None`` arrives."""
    try:
        counter = mod.Counter(specials)
        while (span := tasks.get()) is not None:
            counter.feed(read_utf8_chunk(path, *span))
            results.put((_PROGRESS, span[1] - span[0]))
        results.put((_DONE, counter.dumps()))
    except BaseException as exc:
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"pre-tokenization worker failed: {exc!r}")
        results.put((_ERROR, exc))


def _count_native(mod, path: str, spans, specials, workers: int, progress: bool, as_bytes: bool) -> Counter:
    total = mod.Counter(specials)
    bar = _bar(progress, spans[-1][1] if spans else 0, "pre-tokenize")
    procs = []
    try:
        if workers == 1 or len(spans) <= 1:
            for s, e in spans:
                total.feed(read_utf8_chunk(path, s, e))
                if bar is not None:
                    bar.update(e - s)
        else:
            ctx = mp.get_context("fork")
            tasks, results = ctx.Queue(), ctx.Queue()
            n = min(workers, len(spans))
            for span in spans:
                tasks.put(span)
            for _ in range(n):
                tasks.put(None)
            procs = [
                ctx.Process(target=_native_worker, args=(mod, path, specials, tasks, results), daemon=True)
                for _ in range(n)
            ]
            for p in procs:
                p.start()
            done = 0
            while done < n:
                try:
                    kind, value = results.get(timeout=1.0)
                except queue.Empty:
                    dead = [p for p in procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(
                            f"a pre-tokenization worker died (exit code {dead[0].exitcode}); out of memory?"
                        ) from None
                    continue
                if kind == _PROGRESS:
                    if bar is not None:
                        bar.update(value)
                elif kind == _DONE:
                    total.loads(value)
                    done += 1
                else:
                    raise value
            for p in procs:
                p.join()
            procs = []
    finally:
        for p in procs:  # after an error: stop the others
            if p.is_alive():
                p.terminate()
            p.join()
        if bar is not None:
            bar.close()
    return total.to_dict(Counter(), str_keys=not as_bytes)


def _bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)
