"""``lmfs bench model``: time forward / forward-backward / full training step of the LM for given sizes,
context lengths, precisions (fp32, bf16 autocast) and eager vs ``torch.compile`` — warm-up, device sync,
mean and std over the timed steps."""

from __future__ import annotations

import datetime as _dt
import itertools
import platform
from typing import Any

import torch

from lmfs.profile.sizes import BATCH_SIZE, parse_size
from lmfs.profile.timing import time_fn
from lmfs.profile.workload import MODES, build_workload


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def bench_one(
    size: str, context: int, mode: str, device: str = "cpu", dtype: str = "fp32", compile: bool = False,
    attention: str = "default", warmup: int = 2, steps: int = 5, batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Time one configuration; returns a flat record (times in seconds)."""
    name, model_size = parse_size(size)
    work = build_workload(model_size, context, device, dtype, compile, attention, batch_size)
    timing = time_fn(work.runner(mode), device, warmup=warmup, steps=steps)
    n_params = sum(p.numel() for p in work.model.parameters())
    record = {
        "size": name, "context": context, "batch": batch_size, "mode": mode, "dtype": dtype,
        "compile": compile, "attention": attention, "device": device_name(device), "params": n_params,
        "warmup": warmup, "steps": steps, "mean_s": timing.mean, "std_s": timing.std, "median_s": timing.median,
        "tokens_per_s": batch_size * context / timing.mean if timing.mean > 0 else float("nan"),
        "torch": torch.__version__, "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 - py<3.11 GPU images
    }
    del work
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return record


def bench_grid(
    sizes: list[str], contexts: list[int], modes: list[str], dtypes: list[str], compiles: list[bool], **kwargs: Any
) -> list[dict[str, Any]]:
    """Every combination, with a tqdm bar; a configuration that runs out of memory is recorded as such."""
    try:
        from tqdm import tqdm
    except ImportError:  # e.g. on a bare GPU image: no progress bar
        def tqdm(items, **_):
            return items

    for m in modes:
        if m not in MODES:
            raise ValueError(f"unknown mode {m!r}; choose from {', '.join(MODES)}")
    combos = list(itertools.product(sizes, contexts, modes, dtypes, compiles))
    records = []
    for size, context, mode, dtype, comp in tqdm(combos, desc="bench model", unit="config"):
        try:
            records.append(bench_one(size, context, mode, dtype=dtype, compile=comp, **kwargs))
        except torch.OutOfMemoryError:
            records.append({"size": size, "context": context, "mode": mode, "dtype": dtype, "compile": comp,
                            "error": "out of memory"})
            torch.cuda.empty_cache()
    return records


def format_records(records: list[dict[str, Any]]) -> str:
    """A fixed-width table of the records (ms)."""
    header = f"{'size':<10}{'ctx':>6} {'mode':<17}{'dtype':<6}{'compile':<8}{'attention':<15}{'mean ms':>10}{'std ms':>9}{'tok/s':>10}"
    lines = [header, "-" * len(header)]
    for r in records:
        if "error" in r:
            lines.append(f"{r['size']:<10}{r['context']:>6} {r['mode']:<17}{r['dtype']:<6}{r['compile']!s:<8}  {r['error']}")
            continue
        lines.append(
            f"{r['size']:<10}{r['context']:>6} {r['mode']:<17}{r['dtype']:<6}{r['compile']!s:<8}{r['attention']:<15}"
            f"{r['mean_s'] * 1e3:>10.2f}{r['std_s'] * 1e3:>9.2f}{r['tokens_per_s']:>10.0f}"
        )
    return "\n".join(lines)
