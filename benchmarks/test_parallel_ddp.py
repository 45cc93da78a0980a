"""Data-parallel training steps on the CPU: lmfs's two DDP wrappers vs torch's DistributedDataParallel (the
peer) and one process on the global batch.

Group ``ddp-step-small``: one optimizer step (forward, backward, gradient synchronisation, lmfs AdamW step) of
a 3.3M-parameter ``TransformerLM`` (vocab 4096, d_model 192, 4 layers, context 128) on a global batch of 8
sequences.

* ``lmfs`` (the bucketed wrapper with 25 MB buckets — torch DDP's default size; here the whole model is one
  bucket), ``lmfs-ddp-bucketed-1mb`` (10 buckets), ``lmfs-ddp-individual``, ``torch-ddp``: 2 ranks (gloo,
  spawned processes, 1 torch thread each), 4 sequences per rank;
* ``single-process``: one process with 2 torch threads on all 8 sequences — the same cores without DDP.

The default suite runs four of them (~20 s: most of it is spawning ranks); the 1 MB-bucket variant is
``slow``.

**How it is timed.** pytest-benchmark times in the main process, but the work runs in the ranks. The ranks are
spawned once per benchmark (outside the timing) and stay alive; each timed round, the main process tells every
rank to do one step and waits until all ranks report back. A round is therefore the wall time of one
synchronised global step as seen from outside, plus a queue round trip (~0.1–0.3 ms, under 1 % of a step).
Spawning and process-group set-up are never in a round; one untimed step plus one warm-up round come first.
The ranks also time their own steps (``perf_counter`` around the step); the mean is in ``extra_info
["rank_step_ms"]`` as a cross-check.

2 ranks on a 2-core box share the cores with each other and with the main process (which only waits), so this
measures the overhead of each synchronisation scheme at equal compute, not scaling.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest
import torch

from lmfs.harness.distributed import run_ranks

CONFIG = dict(vocab_size=4096, context_length=128, d_model=192, num_layers=4, num_heads=6, d_ff=512)
GLOBAL_BATCH = 8
WORLD = 2
ROUNDS = 10
IMPLS: dict[str, tuple[int, int, float | None]] = {  # impl -> (world size, torch threads per rank, bucket MB)
    "lmfs-ddp-individual": (WORLD, 1, None),
    "lmfs": (WORLD, 1, 25.0),  # bucketed, torch DDP's default bucket size: the pair the report compares
    "lmfs-ddp-bucketed-1mb": (WORLD, 1, 1.0),
    "torch-ddp": (WORLD, 1, None),
    "single-process": (1, WORLD, None),
}


def _worker(rank: int, world: int, impl: str, threads: int, bucket_mb: float | None, cmds: list, done: Any):
    from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy
    from lmfs.optim import AdamW
    from lmfs.parallel import DDPBucketed, DDPIndividualParameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**CONFIG))
    if impl == "lmfs-ddp-individual":
        wrapped: torch.nn.Module = DDPIndividualParameters(model)
    elif impl == "lmfs" or impl.startswith("lmfs-ddp-bucketed"):
        wrapped = DDPBucketed(model, bucket_mb)
    elif impl == "torch-ddp":
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    else:
        wrapped = model
    opt = AdamW(wrapped.parameters(), lr=1e-3, weight_decay=0.1)
    local = GLOBAL_BATCH // world
    ids = torch.randint(
        0,
        CONFIG["vocab_size"],
        (local, CONFIG["context_length"] + 1),
        generator=torch.Generator().manual_seed(rank),
    )
    times = []
    while cmds[rank].get() is not None:
        t0 = time.perf_counter()
        if isinstance(wrapped, DDPBucketed):
            wrapped.on_train_batch_start()
        opt.zero_grad(set_to_none=True)
        logits = wrapped(ids[:, :-1])
        loss = cross_entropy(logits.reshape(-1, CONFIG["vocab_size"]), ids[:, 1:].reshape(-1))
        loss.backward()
        if hasattr(wrapped, "finish_gradient_synchronization"):
            wrapped.finish_gradient_synchronization()
        opt.step()
        times.append(time.perf_counter() - t0)
        done.put((rank, float(loss)))
    return times


class _Ranks:
    """``world`` ranks running :func:`_worker`, kept alive between steps (``run_ranks`` in a background
    thread)."""

    def __init__(self, impl: str) -> None:
        world, threads, bucket_mb = IMPLS[impl]
        ctx = torch.multiprocessing.get_context("spawn")
        self.cmds = [ctx.Queue() for _ in range(world)]
        self.done = ctx.Queue()
        self.outcome: dict[str, Any] = {}
        args = (impl, threads, bucket_mb, self.cmds, self.done)
        self.thread = threading.Thread(target=self._run, args=(world, args), daemon=True)
        self.thread.start()

    def _run(self, world: int, args: tuple) -> None:
        try:
            self.outcome["times"] = run_ranks(_worker, world, *args, timeout=600)
        except BaseException as exc:  # reported by step() / close()
            self.outcome["error"] = exc

    def step(self) -> float:
        """One step on every rank; returns rank 0's loss."""
        for q in self.cmds:
            q.put(True)
        losses = {}
        while len(losses) < len(self.cmds):
            try:
                rank, loss = self.done.get(timeout=1.0)
                losses[rank] = loss
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError(f"the ranks stopped: {self.outcome.get('error')}") from None
        return losses[0]

    def close(self) -> list[list[float]]:
        for q in self.cmds:
            q.put(None)
        self.thread.join(timeout=120)
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["times"]


@pytest.mark.parametrize(
    "impl", [pytest.param(i, marks=pytest.mark.slow) if i.endswith("-1mb") else i for i in IMPLS]
)
def test_ddp_step(benchmark, impl: str) -> None:
    benchmark.group = "ddp-step-small"  # before timing: pytest-benchmark reads the group when the stats are made
    ranks = _Ranks(impl)
    try:
        first = ranks.step()  # spawn, process group, model build and the first step: untimed
        last = benchmark.pedantic(ranks.step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    finally:
        times = ranks.close()
    world, threads, bucket_mb = IMPLS[impl]
    n_params = sum(p.numel() for p in _model_params())
    tokens = GLOBAL_BATCH * CONFIG["context_length"]
    benchmark.extra_info.update(
        impl=impl,
        ranks=world,
        threads_per_rank=threads,
        bucket_mb=bucket_mb,
        params=n_params,
        tokens=tokens,
        flops=6 * n_params * tokens,
        rank_step_ms=round(1e3 * sum(sum(t[2:]) / len(t[2:]) for t in times) / len(times), 2),
    )
    assert last < first  # the steps train the model


def _model_params() -> list[torch.Tensor]:
    from lmfs.nn import TransformerConfig, TransformerLM

    return list(TransformerLM(TransformerConfig(**CONFIG), device="meta").parameters())
