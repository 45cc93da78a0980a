"""Run a function on several ranks of a CPU process group (gloo), for distributed specs, tests and benchmarks.

``run_ranks(fn, world_size, *args)`` spawns ``world_size`` processes, joins them in a ``torch.distributed`` gloo
group on a free localhost port, calls ``fn(rank, world_size, *args)`` in each and returns the ranks' return
values in rank order. A rank that raises fails the call with that rank's traceback; a rank that dies or hangs
fails it too (after ``timeout`` seconds), and the others are stopped. ``fn`` and ``args`` must be picklable
(``fn`` defined at module level; an :class:`~lmfs.harness.adapter.Adapter` pickles as its spec).

Specs reach this through the ``run_ranks`` fixture of the pytest plugin (specs import nothing from lmfs).
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any


class RankFailed(AssertionError):
    """A rank raised (its traceback is in the message), died or timed out."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, fn: Callable, args: tuple, results: Any) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # ranks share the machine's cores
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException as exc:  # every failure goes back to the parent
        results.put((rank, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_ranks(fn: Callable, world_size: int, *args: Any, timeout: float = 120.0) -> list[Any]:
    """``[fn(0, world_size, *args), ..., fn(world_size - 1, world_size, *args)]``, each in its own process."""
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(r, world_size, port, fn, args, results), daemon=True)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(out) < world_size:
            try:
                rank, ok, value = results.get(timeout=0.5)
            except Exception:  # queue.Empty: check for dead ranks and the deadline
                dead = [r for r, p in enumerate(procs) if p.exitcode not in (None, 0) and r not in out]
                if dead:
                    raise RankFailed(f"rank {dead[0]} died (exit code {procs[dead[0]].exitcode})") from None
                if time.monotonic() > deadline:
                    missing = sorted(set(range(world_size)) - set(out))
                    raise RankFailed(f"ranks {missing} did not finish within {timeout:.0f} s") from None
                continue
            if not ok:
                raise RankFailed(f"rank {rank} failed: {value}")
            out[rank] = value
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    return [out[r] for r in range(world_size)]
