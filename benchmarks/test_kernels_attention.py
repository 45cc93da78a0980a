"""FlashAttention benchmarks.

CPU (default suite, short): lmfs's tiled PyTorch FlashAttention-2 vs naive attention vs ``torch-sdpa``, fp32,
forward+backward, one small shape, threads pinned.

GPU (``-m gpu``): a sweep over sequence length (128…16384), head dims 64/128, bf16, causal, forward / backward /
forward+backward, lmfs Triton vs lmfs tiled PyTorch vs naive vs SDPA's flash and cuDNN backends; and the CS336
leaderboard configuration (16, 16384, 64) bf16 causal ``o.sum().backward()``. Each GPU benchmark stores two numbers:
pytest-benchmark's rounds (host clock around a synchronized call; what the bench store compares) and
``extra_info["do_bench_ms"]``, the ``triton.testing.do_bench`` median (CUDA events), with TFLOP/s from it.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lmfs.kernels.attention_backends import get_backend
from lmfs.kernels.bench import attention_flops, attention_impl, random_inputs, timed_callable

HAS_TRITON = importlib.util.find_spec("triton") is not None


def labels(*names: str) -> list[str]:
    """The benchmark labels (stable ids: they name the benchmarks) of the backends called ``names``."""
    return [get_backend(name).label for name in names]


def impl_label(label: str, ours: str) -> str:
    """extra_info ``impl``: ``"lmfs"`` for the backend that stands for lmfs here (``ours``), else its label."""
    return "lmfs" if label == get_backend(ours).label else label


# ------------------------------------------------------------------------------------------------------- CPU


@pytest.mark.parametrize("impl", labels("pytorch", "naive", "sdpa"))
def test_attention_cpu_fwd_bwd(benchmark, impl):
    torch.set_num_threads(1)
    batch, n, d, causal = 4, 256, 64, True
    q, k, v, g = random_inputs(batch, n, d, torch.float32, "cpu")
    step = timed_callable(attention_impl(impl), q, k, v, g, causal, "fwd+bwd")
    benchmark.group = f"attention-cpu-fwd+bwd-{batch}x{n}x{d}-causal"
    benchmark.extra_info.update(
        impl=impl_label(impl, ours="pytorch"), flops=attention_flops(batch, 1, n, d, causal, "fwd+bwd")
    )
    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=1)


# ------------------------------------------------------------------------------------------------------- GPU

SWEEP_SEQS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384]
SWEEP_IMPLS = labels("triton", "pytorch", "naive", "sdpa-flash", "sdpa-cudnn")
TOKENS_PER_BATCH = 65536  # batch = TOKENS_PER_BATCH // seq keeps every point big enough to fill the GPU
# the tiled PyTorch loop is a reference: short sequences only
MAX_SEQ = dict(zip(labels("pytorch", "naive"), (1024, 16384), strict=True))


def _gpu_bench(benchmark, impl: str, batch: int, n: int, d: int, causal: bool, mode: str, group: str) -> float:
    """do_bench median (ms) + synchronized pytest-benchmark rounds for one point; returns the median."""
    import triton.testing

    q, k, v, g = random_inputs(batch, n, d, torch.bfloat16, "cuda")
    try:
        step = timed_callable(attention_impl(impl), q, k, v, g, causal, mode)
        step()  # compile / autotune / select outside the timings
        torch.cuda.synchronize()
    except RuntimeError as exc:  # e.g. a backend unavailable for this shape/dtype on this card/build
        pytest.skip(f"{impl} unavailable here: {str(exc).splitlines()[0][:200]}")
    ms = float(triton.testing.do_bench(step, grad_to_none=[q, k, v], return_mode="median"))
    flops = attention_flops(batch, 1, n, d, causal, mode)

    def synced() -> None:
        step()
        torch.cuda.synchronize()

    benchmark.group = group
    benchmark.extra_info.update(
        impl=impl_label(impl, ours="triton"), flops=flops, do_bench_ms=ms, tflops=flops / (ms * 1e-3) / 1e12,
        device=torch.cuda.get_device_name(), shape=[batch, n, d], mode=mode, causal=causal, dtype="bfloat16",
        attn_impl=impl,
    )
    rounds = int(min(50, max(5, 300.0 / max(ms, 1e-3))))
    benchmark.pedantic(synced, rounds=rounds, iterations=1, warmup_rounds=1)
    return ms


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("impl", SWEEP_IMPLS)
@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd+bwd"], ids=["fwd", "bwd", "fwdbwd"])
@pytest.mark.parametrize("d", [64, 128], ids=lambda d: f"d{d}")
@pytest.mark.parametrize("n", SWEEP_SEQS, ids=lambda n: f"n{n}")
def test_attention_gpu_sweep(benchmark, impl, mode, d, n):
    if n > MAX_SEQ.get(impl, n):
        pytest.skip(f"{impl} is only swept up to seq {MAX_SEQ[impl]}")
    batch = max(1, TOKENS_PER_BATCH // n)
    _gpu_bench(benchmark, impl, batch, n, d, True, mode, group=f"attention-gpu-{mode}-{batch}x{n}x{d}-causal-bf16")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")
@pytest.mark.parametrize("impl", labels("triton", "sdpa-flash", "sdpa-cudnn"))
def test_attention_gpu_leaderboard(benchmark, impl):
    """CS336 leaderboard: q, k, v (16, 16384, 64) bf16, causal, forward + ``o.sum().backward()``."""
    import triton.testing

    attn = attention_impl(impl)
    q, k, v, _ = random_inputs(16, 16384, 64, torch.bfloat16, "cuda")

    def step() -> None:
        attn(q, k, v, True).sum().backward()

    try:
        step()
        torch.cuda.synchronize()
    except RuntimeError as exc:
        pytest.skip(f"{impl} unavailable here: {str(exc).splitlines()[0][:200]}")
    ms = float(triton.testing.do_bench(step, rep=500, grad_to_none=[q, k, v], return_mode="median"))
    flops = attention_flops(16, 1, 16384, 64, True, "fwd+bwd")

    def synced() -> None:
        step()
        torch.cuda.synchronize()

    benchmark.group = "attention-leaderboard-16x16384x64-causal-bf16"
    benchmark.extra_info.update(
        impl=impl_label(impl, ours="triton"), flops=flops, do_bench_ms=ms, tflops=flops / (ms * 1e-3) / 1e12,
        device=torch.cuda.get_device_name(), attn_impl=impl,
    )
    benchmark.pedantic(synced, rounds=20, iterations=1, warmup_rounds=2)
