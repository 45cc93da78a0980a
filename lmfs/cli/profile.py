"""CLI: ``lmfs bench model`` (time the LM) and ``lmfs profile`` (torch.profiler trace + kernel-time summary)."""

from __future__ import annotations

import argparse
from typing import Any

from lmfs.cli import CLIError
from lmfs.kernels.attention_backends import attention_names

MODES = ("forward", "forward-backward", "step")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", default="tiny",
                   help="a model preset of lmfs.nn.presets: small|medium|large|xl|2.7B (course sizes), tiny|mini "
                   "(CPU-sized) or a named model (see `lmfs model info --help`); or d_model,d_ff,layers,heads")
    p.add_argument("--context", type=int, default=128, help="context length (default 128)")
    p.add_argument("--batch", type=int, default=4, help="batch size (default 4, as in the course)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--attention", choices=attention_names(), default="default",
                   help="attention backend: lmfs.nn's own (default), naive, FlashAttention pytorch|triton, or a torch "
                   "SDPA peer (sdpa, sdpa-math, sdpa-flash, sdpa-cudnn, sdpa-efficient)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def register(groups: dict[str, Any]) -> None:
    bench = groups["bench"].add_parser(
        "model", help="time forward / forward-backward / step of the Transformer LM",
        description="Time the LM with warm-up and device sync (mean ± std over --steps). Every combination of the "
        "--mode, --dtype and --compile values is measured; results are appended to "
        "reports/local/profile/model_bench.jsonl (ignored by git; the report shows it beside the committed "
        "reference timings). Maintainers refresh the committed ones with --out reports/data/profile/model_bench.jsonl.",
    )
    _add_model_args(bench)
    bench.add_argument("--mode", nargs="+", choices=MODES, default=list(MODES))
    bench.add_argument("--dtype", nargs="+", choices=("fp32", "bf16"), default=["fp32"],
                       help="fp32 and/or bf16 (autocast)")
    bench.add_argument("--compile", choices=("off", "on", "both"), default="off", help="torch.compile the model")
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--steps", type=int, default=5)
    bench.add_argument("--out", default=None,
                       help="JSONL to append to (default reports/local/profile/model_bench.jsonl)")
    bench.add_argument("--no-save", action="store_true", help="print only")
    bench.set_defaults(func=_bench_model)

    prof = groups["root"].add_parser(
        "profile", help="torch.profiler run of the LM: trace + kernel-time summary",
        description="Profile a few steps of the LM with torch.profiler (schedule, shapes, memory, stacks). Writes the "
        "trace under <out>/plugins/profile/ (TensorBoard profiler layout; opens in Perfetto / chrome://tracing), "
        "the summary under --data-dir (default reports/local/profile, ignored by git; maintainers refresh the "
        "committed summaries with --data-dir reports/data/profile), and on CUDA a memory snapshot + peak memory "
        "per phase. On every device, the peak memory of one steady-state step as the profiler's "
        "allocator events show it (highest minus lowest live bytes in the step; per phase too).",
    )
    _add_model_args(prof)
    prof.add_argument("--mode", choices=MODES, default="step")
    prof.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    prof.add_argument("--compile", action="store_true", help="torch.compile the model")
    prof.add_argument("--activation-checkpointing", type=int, default=0, metavar="K",
                      help="recompute blocks in backward (TransformerConfig.activation_checkpointing): 0 none "
                      "(default), 1 every block, K every K-th block; the summary's profiler peak memory shows "
                      "what it saves")
    prof.add_argument("--active", type=int, default=2, help="profiled steps (after 1 wait + 1 warm-up step)")
    prof.add_argument("--no-stack", action="store_true", help="skip Python stacks (faster, smaller trace)")
    prof.add_argument("--tag", default=None, help="name of this run (default from the options)")
    prof.add_argument("--out", default=None, help="trace folder (default runs/profile/<tag>)")
    prof.add_argument("--data-dir", default=None, help="summary folder (default reports/local/profile)")
    prof.set_defaults(func=_profile)


def _display(path) -> str:
    """A path relative to the project root when inside it (summaries are committed; no absolute paths)."""
    from pathlib import Path

    from lmfs.paths import project_root

    try:
        return str(Path(path).resolve().relative_to(project_root().resolve()))
    except ValueError:
        return str(path)


def _set_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        raise CLIError(f"--threads must be at least 1 (got {threads})")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _check_size(size: str) -> tuple[str, Any]:
    """The parsed ``--size``, or a CLIError naming the sizes there are."""
    from lmfs.profile.sizes import parse_size

    try:
        return parse_size(size)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        raise CLIError(f"--device {device!r} is not a device; use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device on this machine (torch.cuda.is_available() is False); "
                       "use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise CLIError(f"--device {device!r}: only cpu and cuda are supported")


def _provenance() -> dict[str, Any]:
    """Commit, machine and threads of a measurement, recorded with it (the report prints them)."""
    import torch

    from lmfs.harness.machine import git_commit, machine_id
    from lmfs.paths import project_root

    head, dirty = git_commit(project_root())
    return {"commit": (head + ("-dirty" if dirty else "")) if head else None, "machine_id": machine_id(),
            "threads": torch.get_num_threads()}


def _bench_model(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmfs.atomic import append_jsonl_atomic
    from lmfs.paths import reports_dir
    from lmfs.profile.model_bench import bench_grid, format_records

    _check_size(args.size)
    _check_device(args.device)
    if args.steps < 1 or args.warmup < 0:
        raise CLIError(f"--steps must be at least 1 and --warmup at least 0 (got {args.steps}, {args.warmup})")
    _set_threads(args.threads)
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    records = bench_grid(
        [args.size], [args.context], args.mode, args.dtype, compiles, device=args.device, attention=args.attention,
        warmup=args.warmup, steps=args.steps, batch_size=args.batch,
    )
    prov = _provenance()
    records = [{**r, **prov} for r in records]
    print(format_records(records))
    if not args.no_save:
        out = Path(args.out) if args.out else reports_dir() / "local" / "profile" / "model_bench.jsonl"
        append_jsonl_atomic(out, records)
        print(f"appended {len(records)} records to {out}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from lmfs.paths import project_root, reports_dir
    from lmfs.profile.memory import step_peak_memory, to_mib
    from lmfs.profile.model_bench import device_name
    from lmfs.profile.profiler import (
        format_summary,
        memory_snapshot,
        peak_memory_by_phase,
        profile_workload,
        write_summary,
    )
    from lmfs.profile.workload import build_workload

    name, size = _check_size(args.size)
    _check_device(args.device)
    if args.active < 1:
        raise CLIError(f"--active must be at least 1 (got {args.active})")
    ckpt = args.activation_checkpointing
    if ckpt < 0:
        raise CLIError(f"--activation-checkpointing must be 0 (none), 1 (every block) or K > 1 (every K-th block); "
                       f"got {ckpt}")
    _set_threads(args.threads)
    dev = torch.device(args.device)
    tag = args.tag or (f"{name}-ctx{args.context}-{args.mode}-{args.dtype}-{args.attention}-{dev.type}"
                       + ("-compiled" if args.compile else "") + (f"-ckpt{ckpt}" if ckpt else ""))
    out = Path(args.out) if args.out else project_root() / "runs" / "profile" / tag
    data_dir = Path(args.data_dir) if args.data_dir else reports_dir() / "local" / "profile"
    work = build_workload(size, args.context, args.device, args.dtype, args.compile, args.attention, args.batch,
                          activation_checkpointing=ckpt)
    summary, trace_dir = profile_workload(work, args.mode, out, tag, active=args.active, with_stack=not args.no_stack)
    summary["profiler_memory"] = to_mib(step_peak_memory(work.runner(args.mode), dev))
    summary["peak_memory_mib"] = peak_memory_by_phase(work)
    snap = memory_snapshot(work, args.mode, out / "memory_snapshot.pickle")
    meta = {
        "size": name, "context": args.context, "batch": args.batch, "mode": args.mode, "dtype": args.dtype,
        "compile": args.compile, "attention": args.attention, "activation_checkpointing": ckpt,
        "device": device_name(dev), "torch": torch.__version__,
        "trace_dir": _display(trace_dir), "memory_snapshot": _display(snap) if snap else None, **_provenance(),
    }
    path = write_summary(summary, meta, data_dir, tag)
    print(format_summary(summary))
    traces = sorted(trace_dir.glob(f"{tag}*.pt.trace.json"))
    print(f"trace: {traces[-1] if traces else trace_dir}  (tensorboard --logdir {out}; or open in ui.perfetto.dev)")
    if snap:
        print(f"memory snapshot: {snap}  (drag into https://pytorch.org/memory_viz)")
    print(f"summary: {path}")
    return 0
