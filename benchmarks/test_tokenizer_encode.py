"""Encoding throughput on gutenberg_valid.txt (5.3 MB): lmfs vs tiktoken ``gpt2``, identical ids.

* single thread, warm pre-token cache (the steady state of a long-lived tokenizer) and cold cache (a fresh
  tokenizer: every distinct pre-token runs BPE once);
* whole-file parallel tokenization to a ``.npy`` (all cores) vs tiktoken single-thread encode + ``np.save``
  (with the C encoder lmfs starts one process per 8 MB at most, so the 5 MB file runs in one).

``lmfs`` is the default backend (the C kernels when built: ``extra_info["backend"]``); ``lmfs-python`` forces
the pure-Python reference code.

Targets: single-thread ≥ 0.5× tiktoken; whole-file parallel ≥ tiktoken's single-thread rate.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lmfs.paths import has_shared_data, shared_data

EOT = "<|endoftext|>"

pytestmark = pytest.mark.skipif(
    not has_shared_data("corpus", "gutenberg_valid.txt"),
    reason="needs ../shared/data/corpus/gutenberg_valid.txt",
)


@pytest.fixture(scope="module")
def text() -> str:
    return shared_data("corpus", "gutenberg_valid.txt").read_bytes().decode("utf-8")


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    tiktoken = pytest.importorskip("tiktoken")
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(shared_data("tokenizers", "tiktoken_cache")))
    return tiktoken.get_encoding("gpt2")


def _lmfs_gpt2(backend: str | None = None):
    from lmfs.tokenizer.formats import load_gpt2

    tok = load_gpt2(
        shared_data("tokenizers", "gpt2_encoder.json"), shared_data("tokenizers", "gpt2_vocab.bpe")
    )
    if backend is None:
        return tok
    from lmfs.tokenizer.tokenizer import Tokenizer

    return Tokenizer(tok.vocab, tok.merges, tok.special_tokens, tok.pattern, backend=backend)


@pytest.mark.parametrize("impl", ["lmfs", "lmfs-cold-cache", "lmfs-python", "tiktoken"])
def test_encode_single_thread(benchmark, impl: str, text: str, tiktoken_gpt2) -> None:
    n_bytes = len(text.encode("utf-8"))
    expected = tiktoken_gpt2.encode(text, allowed_special={EOT})
    benchmark.group = "tokenizer-encode-gpt2-single-thread"
    benchmark.extra_info.update(impl=impl, bytes=n_bytes, tokens=len(expected))
    if impl == "tiktoken":
        ids = benchmark.pedantic(
            lambda: tiktoken_gpt2.encode(text, allowed_special={EOT}), rounds=5, iterations=1, warmup_rounds=1
        )
    elif impl in ("lmfs", "lmfs-python"):
        tok = _lmfs_gpt2("python" if impl == "lmfs-python" else None)
        benchmark.extra_info["backend"] = tok.backend
        ids = benchmark.pedantic(lambda: tok.encode(text), rounds=5, iterations=1, warmup_rounds=1)
    else:
        benchmark.extra_info["backend"] = _lmfs_gpt2().backend
        ids = benchmark.pedantic(
            lambda tok: tok.encode(text), setup=lambda: ((_lmfs_gpt2(),), {}), rounds=3, iterations=1
        )
    assert ids == expected


@pytest.mark.parametrize("impl", ["lmfs", "tiktoken"])
def test_encode_whole_file(benchmark, impl: str, tmp_path: Path, tiktoken_gpt2) -> None:
    from lmfs.tokenizer.counting import available_cores

    src = shared_data("corpus", "gutenberg_valid.txt")
    out = tmp_path / "valid.npy"
    benchmark.group = "tokenizer-encode-file-gpt2"
    benchmark.extra_info.update(impl=impl, bytes=src.stat().st_size, cores=available_cores())
    if impl == "lmfs":
        from lmfs.tokenizer.encode_file import encode_file

        # a fresh tokenizer (cold pre-token cache) per round
        benchmark.extra_info["backend"] = _lmfs_gpt2().backend
        benchmark.pedantic(
            lambda tok: encode_file(tok, src, out),
            setup=lambda: ((_lmfs_gpt2(),), {}),
            rounds=3,
            iterations=1,
        )
    else:

        def run() -> None:
            ids = tiktoken_gpt2.encode(src.read_bytes().decode("utf-8"), allowed_special={EOT})
            np.save(out, np.asarray(ids, dtype=np.uint16))

        benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    ids = np.load(out, mmap_mode="r")
    assert ids.dtype == np.uint16
    expected = tiktoken_gpt2.encode(src.read_bytes().decode("utf-8"), allowed_special={EOT})
    assert ids.tolist() == expected
    benchmark.extra_info["tokens"] = len(expected)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["lmfs", "tiktoken"])
def test_encode_whole_file_100mb(benchmark, impl: str, tmp_path: Path, tiktoken_gpt2) -> None:
    """gutenberg_train.txt (100 MB) to a uint16 .npy: the cold-cache start-up cost is amortized here."""
    from lmfs.tokenizer.counting import available_cores

    src = shared_data("corpus", "gutenberg_train.txt")
    out = tmp_path / "train.npy"
    benchmark.group = "tokenizer-encode-file-100MB-gpt2"
    benchmark.extra_info.update(impl=impl, bytes=src.stat().st_size, cores=available_cores())
    if impl == "lmfs":
        from lmfs.tokenizer.encode_file import encode_file

        st = benchmark.pedantic(lambda: encode_file(_lmfs_gpt2(), src, out), rounds=1, iterations=1)
        benchmark.extra_info.update(tokens=st.tokens, backend=st.backend)
        expected = tiktoken_gpt2.encode(src.read_bytes().decode("utf-8"), allowed_special={EOT})
        assert np.array_equal(np.load(out, mmap_mode="r"), np.asarray(expected, dtype=np.uint16))
    else:

        def run() -> int:
            ids = tiktoken_gpt2.encode(src.read_bytes().decode("utf-8"), allowed_special={EOT})
            np.save(out, np.asarray(ids, dtype=np.uint16))
            return len(ids)

        benchmark.extra_info["tokens"] = benchmark.pedantic(run, rounds=1, iterations=1)
    assert np.load(out, mmap_mode="r").shape == (benchmark.extra_info["tokens"],)
