"""``lmfs profile``: run a workload under ``torch.profiler`` and write

* traces in the TensorBoard profiler-plugin layout, ``<out>/plugins/profile/<tag>.<time>.pt.trace.json``
  (Chrome trace JSON: they also open in Perfetto / chrome://tracing);
* on CUDA, a memory snapshot of the caching allocator (``<out>/memory_snapshot.pickle``; open it at
  https://pytorch.org/memory_viz) and the peak memory of each phase;
* the kernel-time summary (:mod:`lmfs.profile.summary`) as ``<data_dir>/<tag>.json`` and ``<tag>_top.csv``,
  which the HTML report shows.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
from pathlib import Path
from typing import Any

import torch

from lmfs.atomic import write_json_atomic, write_text_atomic
from lmfs.profile.summary import summarize_events
from lmfs.profile.timing import synchronize
from lmfs.profile.workload import Workload


def peak_memory_by_phase(work: Workload) -> dict[str, float] | None:
    """Peak CUDA memory (MiB) reached during forward, backward and the optimizer step; None off CUDA."""
    if work.device.type != "cuda":
        return None
    peaks: dict[str, float] = {}
    work.optimizer.zero_grad(set_to_none=True)
    synchronize(work.device)
    torch.cuda.reset_peak_memory_stats(work.device)
    loss = work._loss()
    synchronize(work.device)
    peaks["forward"] = torch.cuda.max_memory_allocated(work.device) / 2**20
    torch.cuda.reset_peak_memory_stats(work.device)
    loss.backward()
    synchronize(work.device)
    peaks["backward"] = torch.cuda.max_memory_allocated(work.device) / 2**20
    torch.cuda.reset_peak_memory_stats(work.device)
    work.optimizer.step()
    synchronize(work.device)
    peaks["optimizer"] = torch.cuda.max_memory_allocated(work.device) / 2**20
    return peaks


def memory_snapshot(work: Workload, mode: str, path: Path, steps: int = 2) -> Path | None:
    """Record the CUDA caching allocator's history over ``steps`` runs of ``mode`` and dump it to ``path``."""
    if work.device.type != "cuda":
        return None
    run = work.runner(mode)
    torch.cuda.memory._record_memory_history(max_entries=200_000)
    try:
        for _ in range(steps):
            run()
        synchronize(work.device)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.cuda.memory._dump_snapshot(str(path))
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    return path


def profile_workload(
    work: Workload, mode: str, out_dir: Path, tag: str, wait: int = 1, warmup: int = 1, active: int = 2,
    with_stack: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Profile ``active`` steps of ``mode`` after ``wait`` + ``warmup`` (torch.profiler schedule); returns the
    summary and the trace folder."""
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    trace_dir = Path(out_dir) / "plugins" / "profile"
    trace_dir.mkdir(parents=True, exist_ok=True)
    on_cuda = work.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    run = work.runner(mode)
    with profile(
        activities=activities,
        schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(trace_dir), worker_name=tag),
        record_shapes=True,
        profile_memory=True,
        with_stack=with_stack,
    ) as prof:
        for _ in range(wait + warmup + active):
            run()
            synchronize(work.device)
            prof.step()
    summary = summarize_events(list(prof.events()), on_cuda, active)
    return summary, trace_dir


def top_csv(summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["name", "category", "calls_per_step", "ms_per_step", "share"])
    writer.writeheader()
    for row in summary["top"]:
        writer.writerow(row)
    return buf.getvalue()


def write_summary(summary: dict[str, Any], meta: dict[str, Any], data_dir: Path, tag: str) -> Path:
    """``<data_dir>/<tag>.json`` (summary + run metadata) and ``<tag>_top.csv``; returns the JSON path."""
    record = {"tag": tag, "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
              **meta, **summary}
    path = Path(data_dir) / f"{tag}.json"
    write_json_atomic(path, record)
    write_text_atomic(Path(data_dir) / f"{tag}_top.csv", top_csv(summary))
    return path


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"time basis: {summary['time_basis']}; {summary['total_ms_per_step']:.2f} ms per step"]
    for c in summary["categories"]:
        lines.append(f"  {c['category']:<18}{c['ms_per_step']:>10.2f} ms  {100 * c['share']:5.1f}%")
    lines.append("top kernels/operators:")
    for r in summary["top"][:10]:
        lines.append(f"  {100 * r['share']:5.1f}%  {r['ms_per_step']:>9.3f} ms  [{r['category']}] {r['name'][:70]}")
    if summary.get("phases_ms_per_step"):
        lines.append("phases (host wall time per step): " + ", ".join(
            f"{k} {v:.2f} ms" for k, v in summary["phases_ms_per_step"].items()))
    mem = summary.get("profiler_memory")
    if mem:
        phases = ", ".join(f"{k} {v:.1f}" for k, v in mem["phase_peak_mib"].items())
        lines.append(f"profiler peak memory over a step ({mem['device']}, MiB above its lowest live bytes): "
                     f"{mem['peak_mib']:.1f}" + (f" ({phases})" if phases else ""))
    if summary.get("peak_memory_mib"):
        lines.append("peak CUDA memory (MiB): " + ", ".join(
            f"{k} {v:.0f}" for k, v in summary["peak_memory_mib"].items()))
    return "\n".join(lines)
