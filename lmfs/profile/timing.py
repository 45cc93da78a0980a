"""Timing with warm-up and device synchronization: CUDA events on a GPU, the host clock after a sync elsewhere."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Timing:
    """Per-call times in seconds, with their mean and (sample) standard deviation."""

    times: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times) if self.times else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.times) if len(self.times) > 1 else 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"mean_s": self.mean, "std_s": self.std, "median_s": self.median, **asdict(self)}


def synchronize(device: torch.device | str) -> None:
    """Wait for queued device work (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":  # pragma: no cover - not on our machines
        torch.mps.synchronize()


def time_fn(fn: Callable[[], object], device: torch.device | str = "cpu", warmup: int = 2, steps: int = 5) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``steps`` times timed, synchronizing around each timed call.

    On CUDA each call is bracketed by CUDA events (device time of the work the call queued); elsewhere by
    ``time.perf_counter`` after a synchronize.
    """
    if steps < 1:
        raise ValueError(f"time_fn: steps must be >= 1, got {steps}")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    timing = Timing()
    if device.type == "cuda":
        for _ in range(steps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            timing.times.append(start.elapsed_time(end) / 1e3)
        return timing
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        timing.times.append(time.perf_counter() - t0)
    return timing
