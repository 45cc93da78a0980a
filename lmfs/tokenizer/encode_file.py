"""Tokenize a whole text file in parallel into a ``.npy`` token array (for ``np.load(..., mmap_mode="r")``).

The file is cut at safe places (special tokens first, see :func:`~lmfs.tokenizer.pretokenize.chunk_boundaries`),
worker processes encode the chunks, and the parent appends their ids in order to a raw temp file; the ``.npy`` is
assembled at the end and moved into place atomically. Memory holds a few chunks at a time, not the file.
Documents separated by ``<|endoftext|>`` in the text get that token's id between them.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from lmfs.atomic import atomic_path
from lmfs.tokenizer.counting import available_cores, native_workers, read_utf8_chunk
from lmfs.tokenizer.pretokenize import chunk_boundaries, read_chunk
from lmfs.tokenizer.tokenizer import Tokenizer

_WORKER_TOKENIZER: Tokenizer | None = None  # set before forking; the workers inherit it


@dataclass
class EncodeStats:
    bytes: int
    tokens: int
    seconds: float
    dtype: str
    backend: str = "python"  # where the encoding ran: "c" (lmfs.tokenizer._ctext) or "python"

    @property
    def bytes_per_token(self) -> float:
        return self.bytes / max(self.tokens, 1)

    @property
    def mb_per_s(self) -> float:
        return self.bytes / max(self.seconds, 1e-9) / 1e6


def _encode_chunk(job: tuple[str, int, int, str]) -> np.ndarray:
    path, start, end, dtype = job
    assert _WORKER_TOKENIZER is not None
    enc = _WORKER_TOKENIZER._native_bytes_encoder()
    if enc is not None:  # GPT-2's pre-tokenizer in C: bytes in, a compact id array out
        data = read_utf8_chunk(path, start, end)
        return np.frombuffer(enc.encode_array(data, np.dtype(dtype).itemsize), dtype=dtype)
    return np.asarray(_WORKER_TOKENIZER.encode(read_chunk(path, start, end)), dtype=dtype)


def token_dtype(vocab_size: int) -> str:
    """``uint16`` when every id fits (vocab ≤ 65,536), else ``uint32``."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def encode_file(
    tokenizer: Tokenizer,
    input_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    num_workers: int | None = None,
    chunk_bytes: int = 1 << 20,
    dtype: str | None = None,
    progress: bool = False,
) -> EncodeStats:
    """Encode ``input_path`` (UTF-8 text) into the 1-D ``.npy`` array ``out_path``; returns sizes and timing."""
    global _WORKER_TOKENIZER
    t0 = time.perf_counter()
    input_path = os.fspath(input_path)
    out = Path(out_path)
    dtype = dtype or token_dtype(max(tokenizer.vocab) + 1)
    if np.iinfo(dtype).max < max(tokenizer.vocab):
        raise ValueError(f"dtype {dtype} cannot hold token id {max(tokenizer.vocab)}; use uint32")
    with open(input_path, "rb") as f:
        bounds = chunk_boundaries(f, chunk_bytes, tokenizer.special_tokens)
    jobs = [(input_path, s, e, dtype) for s, e in itertools.pairwise(bounds) if e > s]
    if tokenizer._native_bytes_encoder() is not None:
        workers = native_workers(num_workers, bounds[-1])
    else:
        workers = num_workers or available_cores()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, raw_path = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".raw")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=bounds[-1], unit="B", unit_scale=True, desc=f"encode {Path(input_path).name}", leave=False
        )
    pool = None
    n_tokens = 0
    try:
        _WORKER_TOKENIZER = tokenizer
        if workers > 1 and len(jobs) > 1:
            # encode the first chunk here before forking: the workers inherit its warm pre-token caches
            first = _encode_chunk(jobs[0])
            pool = mp.get_context("fork").Pool(min(workers, len(jobs) - 1))
            results = chain([first], pool.imap(_encode_chunk, jobs[1:], chunksize=1))
        else:
            results = map(_encode_chunk, jobs)
        with os.fdopen(fd, "wb") as raw:
            for (_, s, e, _), arr in zip(jobs, results, strict=False):
                raw.write(arr.tobytes())
                n_tokens += len(arr)
                if bar is not None:
                    bar.update(e - s)
        _raw_to_npy(raw_path, out, dtype, n_tokens)
    finally:
        _WORKER_TOKENIZER = None
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
        if os.path.exists(raw_path):
            os.unlink(raw_path)
    return EncodeStats(bounds[-1], n_tokens, time.perf_counter() - t0, dtype, tokenizer.backend)


def _raw_to_npy(raw_path: str, out: Path, dtype: str, n: int, block: int = 1 << 24) -> None:
    with atomic_path(out) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n,))
        src = np.memmap(raw_path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
        for i in range(0, n, block):
            arr[i : i + block] = src[i : i + block]
        arr.flush()
        del arr, src
