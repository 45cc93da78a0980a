"""Activation checkpointing on a CPU-sized model: step time and memory with and without.

Group ``actckpt-step-cpu``: one training step (forward, backward, lmfs AdamW) of a ``TransformerLM`` with
d_model 256, 6 layers, context 256, batch 8 (vocab 4096), fp32, with ``activation_checkpointing`` 0 (none),
1 (every block) and 2 (every other block). ``impl`` is ``lmfs`` for every block, ``none`` / ``every-2`` for the
others (the comparison is lmfs against itself: the recompute cost).

Memory, in ``extra_info``, measured in a fresh spawned process per setting (so one setting's high-water mark
does not hide another's): ``saved_for_backward_mib``, the bytes autograd keeps for backward after the forward
pass (counted by a saved-tensors hook, as the profiler would see them on an allocator), and
``peak_rss_delta_mib``, the process's peak resident memory over a training step minus before it
(``ru_maxrss``). On a GPU the same switch is measured by ``lmfs profile`` (peak CUDA memory per phase).
"""

from __future__ import annotations

import resource

import pytest
import torch

from lmfs.harness.distributed import run_ranks

CONFIG = dict(vocab_size=4096, context_length=256, d_model=256, num_layers=6, num_heads=8, d_ff=704)
BATCH = 8
SETTINGS = {"none": 0, "lmfs": 1, "every-2": 2}


def _setup(every: int):
    from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy
    from lmfs.optim import AdamW

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**CONFIG, activation_checkpointing=every))
    opt = AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, CONFIG["vocab_size"], (BATCH, CONFIG["context_length"] + 1),
                        generator=torch.Generator().manual_seed(0))

    def loss_fn():
        logits = model(ids[:, :-1])
        return cross_entropy(logits.reshape(-1, CONFIG["vocab_size"]), ids[:, 1:].reshape(-1))

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn().backward()
        opt.step()

    return loss_fn, step


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
            "peak_rss_mib": after / 1024}


@pytest.mark.slow
@pytest.mark.parametrize("impl", list(SETTINGS))
def test_activation_checkpointing_step(benchmark, torch_threads, impl):
    benchmark.group = "actckpt-step-cpu"
    every = SETTINGS[impl]
    (mem,) = run_ranks(_memory, 1, every, timeout=600)
    _, step = _setup(every)
    step()
    benchmark.pedantic(step, rounds=5, warmup_rounds=1, iterations=1)
    benchmark.extra_info.update(impl=impl, activation_checkpointing=every,
                                tokens=BATCH * CONFIG["context_length"],
                                **{k: round(v, 1) for k, v in mem.items()})
