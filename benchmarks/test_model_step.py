"""Transformer LM step benchmarks with different attention kernels swapped into the model's ``attention_fn`` seam.

CPU (default suite, short): the tiny model, one training step (forward, backward, AdamW), lmfs's own attention vs
the tiled FlashAttention-2 (PyTorch) vs ``torch-sdpa``. GPU (``-m gpu``): the course's small model, context 1024,
bf16 autocast, lmfs default attention vs naive vs lmfs Triton FlashAttention-2 vs ``torch-sdpa``.
"""

from __future__ import annotations

import pytest
import torch

from lmfs.kernels.attention_backends import get_backend
from lmfs.profile.sizes import parse_size
from lmfs.profile.workload import build_workload
from lmfs.scaling.accounting import kaplan_flops_per_token, param_count

# extra_info ``impl`` of lmfs's FlashAttention variants, as first stored (other backends: their registry label)
FLASH_IMPL = {"pytorch": "lmfs-flash-pytorch", "triton": "lmfs-flash-triton"}


def _impl(attention: str) -> str:
    return FLASH_IMPL.get(attention) or get_backend(attention).label


def _workload(size: str, context: int, device: str, dtype: str, attention: str):
    return build_workload(parse_size(size)[1], context, device, dtype, attention=attention)


def _train_flops(work, context: int) -> float:
    """6N + 12·L·d·T per token, N without the input embedding (a lookup, no FLOPs)."""
    cfg = work.model.config
    counts = param_count(cfg)
    return work.inputs.numel() * kaplan_flops_per_token(cfg, context, n_params=counts.total - counts.embedding)


@pytest.mark.parametrize("attention", ["default", "pytorch", "sdpa"])
def test_model_step_cpu_tiny(benchmark, attention):
    torch.set_num_threads(1)
    context = 128
    work = _workload("tiny", context, "cpu", "fp32", attention)
    benchmark.group = f"model-step-cpu-tiny-ctx{context}"
    benchmark.extra_info.update(impl=_impl(attention), flops=_train_flops(work, context), tokens=work.inputs.numel())
    benchmark.pedantic(work.step, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.gpu
@pytest.mark.parametrize("attention", ["default", "naive", "triton", "sdpa"])
def test_model_step_gpu_small(benchmark, attention):
    context = 1024
    work = _workload("small", context, "cuda", "bf16", attention)

    def synced() -> None:
        work.step()
        torch.cuda.synchronize()

    synced()  # compile / autotune outside the timings
    benchmark.group = f"model-step-gpu-small-ctx{context}-bf16"
    benchmark.extra_info.update(impl=_impl(attention), flops=_train_flops(work, context), tokens=work.inputs.numel(),
                                device=torch.cuda.get_device_name())
    benchmark.pedantic(synced, rounds=10, iterations=1, warmup_rounds=2)
