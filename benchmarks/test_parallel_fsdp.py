"""Fully sharded training steps on 2 CPU ranks: lmfs's FSDP vs torch's FSDP2 (``torch.distributed.fsdp.
fully_shard``, the peer), with lmfs's DDP as the memory reference.

Group ``fsdp-step-2ranks``: one optimizer step (forward, backward, gradient reduce-scatter / all-reduce,
``torch.optim.AdamW`` step for all three, so the optimizer is not what differs) of the 3.3M-parameter
``TransformerLM`` of the DDP benchmark (vocab 4096, d_model 192, 4 layers, context 128), global batch 8, 2 gloo
ranks with 1 torch thread each. FSDP2 shards each block and then the root (its usual wrapping); lmfs's FSDP
gathers per module that owns parameters.

``extra_info`` per implementation (rank 0's figures; the ranks are within a few elements of each other):
``state_bytes_per_rank`` = parameters + gradients + optimizer state held by the rank after a step (local shards
for the sharded ones: ``to_local()`` for FSDP2's DTensors), ``state_vs_ddp`` its ratio to DDP's (target ≤ 0.6
on 2 ranks), ``peak_rss_mib`` the rank process's peak resident memory (``ru_maxrss``, the whole process:
interpreter, torch and the data included), ``rank_step_ms`` the ranks' own step times.

Timing as in ``test_parallel_ddp.py``: ranks spawned once per benchmark, kept alive, one timed round = the
main process asks every rank for one step and waits for all of them.
"""

from __future__ import annotations

import queue
import resource
import threading
import time
from typing import Any

import pytest
import torch

from lmfs.harness.distributed import run_ranks

CONFIG = dict(vocab_size=4096, context_length=128, d_model=192, num_layers=4, num_heads=6, d_ff=512)
GLOBAL_BATCH = 8
WORLD = 2
ROUNDS = 8
IMPLS = ("lmfs-ddp", "lmfs", "torch-fsdp2")  # DDP first: its measured state is the reference


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _state_bytes(model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    total = 0
    for p in model.parameters():
        total += _local(p).numel() * p.element_size()
        if p.grad is not None:
            total += _local(p.grad).numel() * p.grad.element_size()
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                total += _local(v).numel() * v.element_size()
    return total


def _worker(rank: int, world: int, impl: str, cmds: list, done: Any) -> dict[str, Any]:
    from lmfs.nn import TransformerConfig, TransformerLM, cross_entropy
    from lmfs.parallel import DDPIndividualParameters
    from lmfs.parallel.fsdp import FSDP

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(**CONFIG))
    if impl == "lmfs":
        net: torch.nn.Module = FSDP(model)
    elif impl == "torch-fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model.layers:
            fully_shard(layer)
        net = fully_shard(model)
    else:
        net = DDPIndividualParameters(model)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.1)
    ids = torch.randint(0, CONFIG["vocab_size"], (GLOBAL_BATCH // world, CONFIG["context_length"] + 1),
                        generator=torch.Generator().manual_seed(rank))
    times = []
    while cmds[rank].get() is not None:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = net(ids[:, :-1])
        loss = cross_entropy(logits.reshape(-1, CONFIG["vocab_size"]), ids[:, 1:].reshape(-1))
        loss.backward()
        if hasattr(net, "finish_gradient_synchronization"):
            net.finish_gradient_synchronization()
        opt.step()
        times.append(time.perf_counter() - t0)
        done.put((rank, float(loss)))
    return {"times": times, "state_bytes": _state_bytes(net, opt),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


class _Ranks:
    def __init__(self, impl: str) -> None:
        ctx = torch.multiprocessing.get_context("spawn")
        self.cmds = [ctx.Queue() for _ in range(WORLD)]
        self.done = ctx.Queue()
        self.outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(impl,), daemon=True)
        self.thread.start()

    def _run(self, impl: str) -> None:
        try:
            self.outcome["ranks"] = run_ranks(_worker, WORLD, impl, self.cmds, self.done, timeout=900)
        except BaseException as exc:
            self.outcome["error"] = exc

    def step(self) -> float:
        for q in self.cmds:
            q.put(True)
        losses = {}
        while len(losses) < WORLD:
            try:
                rank, loss = self.done.get(timeout=1.0)
            except queue.Empty:
                if "error" in self.outcome:
                    raise self.outcome["error"] from None
                continue
            losses[rank] = loss
        return losses[0]

    def close(self) -> list[dict[str, Any]]:
        for q in self.cmds:
            q.put(None)
        self.thread.join(timeout=120)
        if "error" in self.outcome:
            raise self.outcome["error"]
        return self.outcome["ranks"]


_DDP_STATE: dict[str, int] = {}


@pytest.mark.parametrize("impl", IMPLS)
def test_fsdp_step(benchmark, impl):
    benchmark.group = "fsdp-step-2ranks"
    ranks = _Ranks(impl)
    try:
        ranks.step()  # untimed: first-step allocations, optimizer state
        benchmark.pedantic(ranks.step, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    finally:
        per_rank = ranks.close()
    r0 = per_rank[0]
    if impl == "lmfs-ddp":
        _DDP_STATE["bytes"] = r0["state_bytes"]
    benchmark.extra_info.update(
        impl=impl,
        world_size=WORLD,
        tokens=GLOBAL_BATCH * CONFIG["context_length"],
        state_bytes_per_rank=[r["state_bytes"] for r in per_rank],
        peak_rss_mib=[round(r["peak_rss_mib"], 1) for r in per_rank],
        rank_step_ms=[round(1e3 * sum(r["times"][1:]) / max(1, len(r["times"]) - 1), 2) for r in per_rank],
    )
    if impl != "lmfs-ddp":
        # DDP's state is every parameter + gradient + AdamW's two moments, replicated: 4 x fp32 per element
        n = sum(p.numel() for p in _model_params())
        ddp_bytes = _DDP_STATE.get("bytes", 4 * 4 * n)
        benchmark.extra_info["state_vs_ddp"] = round(r0["state_bytes"] / ddp_bytes, 3)


def _model_params():
    from lmfs.nn import TransformerConfig, TransformerLM

    return list(TransformerLM(TransformerConfig(**CONFIG)).parameters())
