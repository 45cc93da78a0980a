"""Peak memory of a training step as the PyTorch profiler sees it.

``torch.profiler.profile(profile_memory=True)`` records one ``[memory]`` event per allocator call while it runs:
``+bytes`` for an allocation, ``-bytes`` for a free, with its device and time. On the CPU these come from
c10's CPU allocator, which reports a free only for blocks it saw allocated while profiling (a block from before
is freed silently, with a one-time warning); on CUDA from the caching allocator (every free is reported).
Summing the events in time order gives the bytes allocated since profiling began (a :func:`live_curve`).

:func:`step_peak_memory` profiles ``steps`` runs of a step (default 2) and measures the last: every block
freed in it was allocated inside the profiled window (the previous step's gradients, freed by
``zero_grad(set_to_none=True)``, included), so on the CPU too the curve is exact. Its figure is the step's
*working memory*: the highest live bytes in the step minus the lowest (the low point is the state that lives
through the step — weights, optimizer state — once the previous gradients are freed). That is activations kept
for backward, gradients and temporaries: the part activation checkpointing changes. Phases marked with
``record_function`` ranges (``forward``, ``backward``, ``optimizer`` in :mod:`lmfs.profile.workload`) get
their own peak on the same baseline. On CUDA the allocator's own statistics are returned beside it as a
cross-check: ``torch.cuda.max_memory_allocated`` over the step minus ``torch.cuda.memory_allocated`` at its
start, which should match the profiler's ``peak_bytes - start_bytes`` (block sizes rounded alike).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

MEMORY_EVENT = "[memory]"
STEP_RANGE = "lmfs_memory_step"
PHASES = ("forward", "backward", "optimizer")


def allocation_events(prof: Any, device: torch.device | str) -> list[tuple[int, int]]:
    """``(time_ns, bytes)`` of every allocator event on ``device`` recorded by a finished ``torch.profiler``
    session (``profile_memory=True``), in time order; frees are negative."""
    dev = torch.device(device)
    want = torch.device(dev.type, torch.cuda.current_device()) if dev.type == "cuda" and dev.index is None else dev
    out = []
    for e in prof.profiler.kineto_results.events():
        if e.name() != MEMORY_EVENT or e.device_type().name != want.type.upper():
            continue
        if want.type == "cuda" and e.device_index() != want.index:
            continue
        out.append((e.start_ns(), e.nbytes()))
    out.sort(key=lambda t: t[0])  # stable: events of one thread keep their order
    return out


def ranges(prof: Any, names: Iterable[str]) -> dict[str, list[tuple[int, int]]]:
    """``(start_ns, end_ns)`` of every ``record_function`` range called one of ``names``, by name, in time order."""
    wanted = set(names)
    found: dict[str, list[tuple[int, int]]] = {n: [] for n in wanted}
    for e in prof.profiler.kineto_results.events():
        if e.name() in wanted and e.device_type().name == "CPU":
            found[e.name()].append((e.start_ns(), e.end_ns()))
    return {n: sorted(v) for n, v in found.items()}


def live_curve(events: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(time_ns, bytes allocated since profiling began)`` after each event."""
    total, out = 0, []
    for t, n in events:
        total += n
        out.append((t, total))
    return out


def window(curve: Sequence[tuple[int, int]], start_ns: int, end_ns: int) -> tuple[int, int, int]:
    """``(bytes live at start_ns, lowest, highest bytes live in [start_ns, end_ns])`` of a :func:`live_curve`."""
    base = 0
    for t, v in curve:
        if t >= start_ns:
            break
        base = v
    inside = [v for t, v in curve if start_ns <= t <= end_ns]
    return base, min([base, *inside]), max([base, *inside])


def step_peak_memory(
    step: Callable[[], Any], device: torch.device | str = "cpu", *, steps: int = 2,
    phases: Sequence[str] = PHASES,
) -> dict[str, Any]:
    """Profile ``steps`` runs of ``step`` and return the last one's memory, in bytes above the lowest live
    bytes during it: ``peak_bytes`` over the whole step, ``phase_peak_bytes`` per ``record_function`` range of
    ``phases`` that ran inside it (same baseline), ``start_bytes`` / ``end_bytes`` (live at its start and end on
    that baseline: the previous and the new gradients), the number of allocator ``events`` in the step and,
    on CUDA, ``cuda_max_allocated_bytes`` (``torch.cuda.max_memory_allocated`` over the step minus the bytes
    allocated at its start; add ``start_bytes`` to compare). Run the step once before (warm-up: optimizer
    state, lazily built buffers) so that it is a steady-state step."""
    from torch.profiler import ProfilerActivity, profile, record_function

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    dev = torch.device(device)
    on_cuda = dev.type == "cuda"

    def sync() -> None:
        if on_cuda:
            torch.cuda.synchronize(dev)

    cuda_peak = None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for i in range(steps):
            last = i == steps - 1
            sync()
            if last and on_cuda:
                torch.cuda.reset_peak_memory_stats(dev)
                cuda_start = torch.cuda.memory_allocated(dev)
            with record_function(STEP_RANGE):
                step()
                sync()
            if last and on_cuda:
                cuda_peak = torch.cuda.max_memory_allocated(dev) - cuda_start
    curve = live_curve(allocation_events(prof, dev))
    found = ranges(prof, [STEP_RANGE, *phases])
    start, end = found[STEP_RANGE][-1]
    at_start, low, peak = window(curve, start, end)
    phase_peaks = {}
    for name in phases:
        inside = [(s, e) for s, e in found[name] if start <= s and e <= end]
        if inside:
            phase_peaks[name] = max(window(curve, s, e)[2] for s, e in inside) - low
    after = [v for t, v in curve if t <= end]
    result: dict[str, Any] = {
        "peak_bytes": peak - low,
        "phase_peak_bytes": phase_peaks,
        "start_bytes": at_start - low,
        "end_bytes": (after[-1] if after else 0) - low,
        "events": sum(1 for t, _ in curve if start <= t <= end),
        "device": dev.type,
    }
    if cuda_peak is not None:
        result["cuda_max_allocated_bytes"] = cuda_peak
    return result


def to_mib(result: dict[str, Any]) -> dict[str, Any]:
    """:func:`step_peak_memory`'s byte counts in MiB (for summaries and ``extra_info``)."""
    out: dict[str, Any] = {"peak_mib": result["peak_bytes"] / 2**20, "start_mib": result["start_bytes"] / 2**20,
                           "end_mib": result["end_bytes"] / 2**20,
                           "phase_peak_mib": {k: v / 2**20 for k, v in result["phase_peak_bytes"].items()},
                           "events": result["events"], "device": result["device"]}
    if "cuda_max_allocated_bytes" in result:
        out["cuda_max_allocated_mib"] = result["cuda_max_allocated_bytes"] / 2**20
    return out
