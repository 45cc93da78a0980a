"""Run a function on several ranks of a CPU process group (gloo), for distributed specs, tests and benchmarks.

``run_ranks(fn, world_size, *args)`` spawns ``world_size`` processes, joins them in a ``torch.distributed`` gloo
group on a free localhost port, calls ``fn(rank, world_size, *args)`` in each and returns the ranks' return
values in rank order. A rank that raises fails the call with that rank's traceback; a rank that dies or hangs
fails it too (after ``timeout`` seconds), and the others are stopped. ``fn`` and ``args`` must be picklable
(``fn`` defined at module level; an :class:`~lmfs.harness.adapter.Adapter` pickles as its spec).

``run_colocated(fn, world_size, adapter, *args, rank_args=None)`` is for a spec whose rank code must run in the
process that holds the adapter (it wraps ``torch.distributed``'s collectives, or looks at the weights the layers
see): ``fn(rank, world_size, adapter, *args, *rank_args[rank])`` on each rank, where ``adapter`` is the
submission itself. Under ``pytest --adapter`` that is :func:`run_ranks`; under ``lmfs grade`` the function is
shipped by value into the sandboxed worker and runs there beside the submission
(:meth:`lmfs.harness.remote.WorkerSession.run_colocated`). Either way only plain data comes back
(:func:`plain_result`), and the spec decides its verdict from it in its own process: what was computed next to
the submission is the submission's word, so check there whatever can be recomputed (values against a reference
the spec computes itself) and treat the rest (counts, dtypes, sizes observed in the rank) as claims.

Specs reach these through the ``run_ranks`` and ``run_colocated`` fixtures of the pytest plugin (specs import
nothing from lmfs).
"""

from __future__ import annotations

import os
import pickle
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
            # pickled here, by value: a tensor put on the queue as it is would travel as shared memory that
            # goes away when this rank exits, before the parent has read it
            results.put((rank, True, pickle.dumps(fn(rank, world_size, *args))))
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
            out[rank] = pickle.loads(value)
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    return [out[r] for r in range(world_size)]


# ----------------------------------------------------------------------------------------------- colocated ranks

MAX_RESULT_BYTES = 256 * 2**20  # tensor bytes in one rank's result
MAX_RESULT_ITEMS = 200_000  # values and containers in one rank's result
MAX_RESULT_DEPTH = 32
MAX_STR = 1 << 20


class RankResultInvalid(RankFailed):
    """A rank's result holds something other than plain data, or too much of it."""


def plain_result(value: Any, what: str = "rank result") -> Any:
    """A copy of ``value`` built of plain types only: None, bool, int, float, str, and lists, tuples and dicts
    (str or int keys) of them, and ``torch.Tensor`` (exactly that class, on the CPU, not requiring grad; a
    Parameter comes back as a plain tensor). Anything else — a proxy of the worker's objects, a subclass of a
    plain type, a tensor subclass, too much data — raises :class:`RankResultInvalid`. Type checks are by
    exact class, so nothing of the value's own code runs."""
    import torch

    budget = {"items": 0, "bytes": 0}

    def bad(path: str, why: str) -> RankResultInvalid:
        return RankResultInvalid(f"{what}{path}: {why}")

    def walk(x: Any, path: str, depth: int) -> Any:
        budget["items"] += 1
        if budget["items"] > MAX_RESULT_ITEMS:
            raise bad(path, f"more than {MAX_RESULT_ITEMS} values")
        if depth > MAX_RESULT_DEPTH:
            raise bad(path, f"nested deeper than {MAX_RESULT_DEPTH}")
        t = type(x)
        if x is None or t in (bool, int, float):
            return x
        if t is str:
            if len(x) > MAX_STR:
                raise bad(path, f"a string of {len(x)} characters")
            return x
        if t is torch.Tensor or t is torch.nn.Parameter:
            if x.requires_grad or x.grad_fn is not None:
                raise bad(path, "a tensor that carries autograd state")
            if x.device.type != "cpu" or x.layout != torch.strided or x.is_quantized:
                raise bad(path, "not a dense CPU tensor")
            budget["bytes"] += x.numel() * x.element_size()
            if budget["bytes"] > MAX_RESULT_BYTES:
                raise bad(path, f"more than {MAX_RESULT_BYTES} bytes of tensors")
            return x.detach().clone()  # a Parameter's detached copy is a plain tensor
        if t is list or t is tuple:
            return t(walk(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(x))
        if t is dict:
            out = {}
            for k, v in x.items():
                if type(k) not in (str, int):
                    raise bad(path, f"a dict key of type {type(k).__name__}")
                out[k] = walk(v, f"{path}[{k!r}]", depth + 1)
            return out
        raise bad(path, f"a {t.__module__}.{t.__qualname__} (only plain data may come back from a rank)")

    return walk(value, "", 0)


def _colocated_main(rank: int, world_size: int, fn: Callable, adapter: Any, args: tuple,
                    rank_args: list | None) -> Any:
    extra = tuple(rank_args[rank]) if rank_args is not None else ()
    return fn(rank, world_size, adapter, *args, *extra)


def run_colocated(fn: Callable, world_size: int, adapter: Any, *args: Any, rank_args: list | None = None,
                  timeout: float = 120.0) -> list[Any]:
    """``[fn(r, world_size, adapter, *args, *rank_args[r]) for r in ranks]``, each rank in the process that
    holds the submission: spawned ranks (:func:`run_ranks`) under ``pytest --adapter``, hosts in the grading
    worker's sandbox under ``lmfs grade`` (``fn`` travels by value there: it and the same-module code it names
    must not need the spec file, ``pytest`` or other module-level objects). The results pass
    :func:`plain_result`."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if rank_args is not None and len(rank_args) != world_size:
        raise ValueError(f"rank_args has {len(rank_args)} entries for {world_size} ranks")
    remote = getattr(type(adapter), "_run_colocated", None)
    if remote is not None:
        results = remote(adapter, fn, world_size, tuple(args), rank_args, timeout)
    else:
        results = run_ranks(_colocated_main, world_size, fn, adapter, tuple(args), rank_args, timeout=timeout)
    if not isinstance(results, list) or len(results) != world_size:
        raise RankResultInvalid(f"expected {world_size} rank results")
    return [plain_result(r, f"rank {i}'s result") for i, r in enumerate(results)]
