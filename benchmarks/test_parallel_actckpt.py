"""Activation checkpointing: step time and memory with and without, on a CPU-sized model and (GPU) the 124M shape.

Group ``actckpt-step-cpu``: one training step (forward, backward, lmfs AdamW) of a ``TransformerLM`` with
d_model 256, 6 layers, context 256, batch 8 (vocab 4096), fp32, with ``activation_checkpointing`` 0 (none),
1 (every block) and 2 (every other block). ``impl`` is ``lmfs`` for every block, ``none`` / ``every-2`` for the
others (the comparison is lmfs against itself: the recompute cost).

Memory, in ``extra_info``, measured in a fresh spawned process per setting (so one setting's high-water mark
does not hide another's; 2 torch threads there, ``memory_threads``; the timed step runs on ``threads``):

- ``profiler_peak_mib``: the PyTorch profiler's figure (``torch.profiler.profile(profile_memory=True)``, the
  CPU allocator's allocation and free events summed over a steady-state step, :mod:`lmfs.profile.memory`):
  the step's highest live bytes minus its lowest (weights and optimizer state once the previous gradients are
  freed), i.e. activations, gradients and temporaries; ``profiler_forward_peak_mib`` /
  ``profiler_backward_peak_mib`` / ``profiler_optimizer_peak_mib`` per phase on the same baseline;
- ``saved_for_backward_mib``: the bytes autograd keeps for backward after the forward pass (distinct
  storages seen by a saved-tensors hook);
- ``peak_rss_delta_mib`` / ``peak_rss_mib``: the process's peak resident memory over a training step minus
  before it, and absolute (``ru_maxrss``; coarse: glibc keeps freed pages, so it reads 0 when the step fits in
  memory the process already touched).

Group ``actckpt-step-124m-cuda`` (marked ``gpu``; skipped without CUDA): the same three settings on the
``llama-124m`` preset (d_model 768, 12 layers, vocab 32000), context 1024, batch 8, fp32 weights, bf16 autocast,
with ``profiler_peak_mib`` from the CUDA caching allocator's profiler events and ``cuda_max_allocated_mib``
(``torch.cuda.max_memory_allocated`` over the same step, minus the bytes allocated at its start) beside it.
"""

from __future__ import annotations

import contextlib
import resource

import pytest
import torch

from lmfs.harness.distributed import run_ranks

CONFIG = dict(vocab_size=4096, context_length=256, d_model=256, num_layers=6, num_heads=8, d_ff=704)
BATCH = 8
SETTINGS = {"none": 0, "lmfs": 1, "every-2": 2}
GPU_BATCH = 8


def _setup(every: int, config: dict | None = None, batch: int = BATCH, device: str = "cpu", bf16: bool = False):
    from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy
    from lmfs.optim import AdamW
    from lmfs.profile.workload import annotate

    config = config or CONFIG
    dev = torch.device(device)
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**{**config, "activation_checkpointing": every}), device=dev)
    opt = AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, config["vocab_size"], (batch, config["context_length"] + 1),
                        generator=torch.Generator().manual_seed(0)).to(dev)
    autocast = (lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def loss_fn():
        with annotate("forward", dev), autocast():
            logits = model(ids[:, :-1])
            return cross_entropy(logits.float().reshape(-1, config["vocab_size"]), ids[:, 1:].reshape(-1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        with annotate("backward", dev):
            loss.backward()
        with annotate("optimizer", dev):
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    return loss_fn, step


def _profiler_info(step, device: str) -> dict[str, float]:
    """The profiler's peak of one steady-state ``step`` (warmed up by the caller), in MiB, flat for extra_info."""
    from lmfs.profile.memory import step_peak_memory, to_mib

    mem = to_mib(step_peak_memory(step, device))
    info = {"profiler_peak_mib": mem["peak_mib"]}
    info.update({f"profiler_{k}_peak_mib": v for k, v in mem["phase_peak_mib"].items()})
    if "cuda_max_allocated_mib" in mem:
        info["cuda_max_allocated_mib"] = mem["cuda_max_allocated_mib"]
    return info


def _memory(rank: int, world: int, every: int) -> dict[str, float]:
    torch.set_num_threads(2)
    loss_fn, step = _setup(every)
    step()  # optimizer state and allocator warm
    saved = [0]
    seen: set[int] = set()

    def pack(t):
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            saved[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"saved_for_backward_mib": saved[0] / 2**20, "peak_rss_delta_mib": (after - before) / 1024,
            "peak_rss_mib": after / 1024, **_profiler_info(step, "cpu")}


@pytest.mark.slow
@pytest.mark.parametrize("impl", list(SETTINGS))
def test_activation_checkpointing_step(benchmark, torch_threads, impl):
    benchmark.group = "actckpt-step-cpu"
    every = SETTINGS[impl]
    (mem,) = run_ranks(_memory, 1, every, timeout=600)
    _, step = _setup(every)
    step()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(impl=impl, activation_checkpointing=every, threads=torch_threads,
                                memory_threads=2, tokens=BATCH * CONFIG["context_length"],
                                **{k: round(v, 1) for k, v in mem.items()})


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("impl", list(SETTINGS))
def test_activation_checkpointing_step_124m_cuda(benchmark, impl):
    from lmfs.nn.presets import preset_fields

    benchmark.group = "actckpt-step-124m-cuda"
    every = SETTINGS[impl]
    config = preset_fields("llama-124m")
    _, step = _setup(every, config, GPU_BATCH, "cuda", bf16=True)
    step()
    mem = _profiler_info(step, "cuda")  # in-process: the CUDA allocator's statistics are per step
    benchmark.pedantic(step, rounds=10, warmup_rounds=2, iterations=1)
    benchmark.extra_info.update(impl=impl, activation_checkpointing=every, device=torch.cuda.get_device_name(),
                                tokens=GPU_BATCH * config["context_length"],
                                **{k: round(v, 1) for k, v in mem.items()})
