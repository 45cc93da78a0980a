"""BPE training: lmfs vs HF ``tokenizers`` BpeTrainer (byte-level), same file, vocab 10,000, all cores.

10 MB (a prefix of gutenberg_train.txt cut at a line end) runs in the default suite; the full 100 MB file is
``slow``. Both peers use every core (lmfs: up to one pre-tokenization process per core; HF: its Rayon pool).
``lmfs`` is the default backend (the C kernels when built); ``lmfs-python`` the pure-Python reference code.
Target: lmfs wall time ≤ 1.0× HF's, peak RSS < 2 GB.
"""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from lmfs.paths import has_shared_data, shared_data

EOT = "<|endoftext|>"
VOCAB = 10_000

pytestmark = pytest.mark.skipif(
    not has_shared_data("corpus", "gutenberg_train.txt"),
    reason="needs ../shared/data/corpus/gutenberg_train.txt",
)


@pytest.fixture(scope="module")
def corpus_10mb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = shared_data("corpus", "gutenberg_train.txt").open("rb").read(10_000_000)
    data = data[: data.rfind(b"\n") + 1]
    path = tmp_path_factory.mktemp("corpus") / "gutenberg_10mb.txt"
    path.write_bytes(data)
    return path


def _train_lmfs(path: Path, backend: str | None = None) -> dict:
    from lmfs.tokenizer.train import TrainStats, train_bpe

    stats = TrainStats()
    vocab, _merges = train_bpe(path, VOCAB, [EOT], stats=stats, backend=backend)
    assert len(vocab) == VOCAB
    return {
        "pretokenize_s": stats.pretokenize_s,
        "merge_s": stats.merge_s,
        "peak_rss_mb": stats.peak_rss_mb,
        "peak_worker_rss_mb": stats.peak_worker_rss_mb,
        "backend": stats.extra.get("backend", "python"),
    }


def _train_hf(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(path)], trainer)
    assert tok.get_vocab_size() == VOCAB


def _run(benchmark, impl: str, path: Path, group: str, rounds: int) -> None:
    pytest.importorskip("tokenizers")
    benchmark.group = group
    benchmark.extra_info.update(impl=impl, bytes=path.stat().st_size)
    if impl in ("lmfs", "lmfs-python"):
        info: dict = {}
        backend = "python" if impl == "lmfs-python" else None
        benchmark.pedantic(
            lambda: info.update(_train_lmfs(path, backend)), rounds=rounds, iterations=1, warmup_rounds=0
        )
        benchmark.extra_info.update({k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()})
        assert info["peak_rss_mb"] < 2048 and info["peak_worker_rss_mb"] < 2048
    else:
        benchmark.pedantic(lambda: _train_hf(path), rounds=rounds, iterations=1, warmup_rounds=0)
        benchmark.extra_info["peak_rss_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )


@pytest.mark.parametrize("impl", ["lmfs", "lmfs-python", "hf-tokenizers"])
def test_train_bpe_10mb(benchmark, impl: str, corpus_10mb: Path) -> None:
    _run(benchmark, impl, corpus_10mb, "tokenizer-train-10MB-vocab10k", rounds=2)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["lmfs", "hf-tokenizers"])
def test_train_bpe_100mb(benchmark, impl: str) -> None:
    _run(
        benchmark,
        impl,
        shared_data("corpus", "gutenberg_train.txt"),
        "tokenizer-train-100MB-vocab10k",
        rounds=1,
    )
