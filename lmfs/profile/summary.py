"""Turn a finished ``torch.profiler`` run into a kernel-time summary: the top kernels (GPU) or operators (CPU)
and the share of time in matmul vs attention/softmax vs everything else.

Time basis: on CUDA, device kernel durations; on the CPU, operators' self CPU time. An event counts as
attention when its name says so (softmax, flash, attention, the lmfs Triton kernels) or when it runs inside a
``record_function("attention")`` range (lmfs's workload wraps every layer's attention call in one), so the
from-scratch softmax of the default attention is attributed to attention too. Backward ops of a from-scratch
attention run outside that range and count by name only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

CATEGORIES = ("matmul", "attention/softmax", "other")
ANNOTATIONS = ("forward", "backward", "optimizer", "attention")
_ATTENTION_WORDS = ("softmax", "flash", "attention", "scaled_dot_product", "_fwd_kernel", "_bwd_kv_kernel",
                    "_bwd_q_kernel", "_bwd_delta_kernel", "sdpa", "fmha")
_MATMUL_WORDS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
                 "aten::einsum", "aten::_scaled_mm", "gemm", "cutlass", "xmma", "nvjet", "cublas", "wgmma", "mkldnn_matmul")


def classify(name: str, inside_attention: bool = False) -> str:
    """The category of one kernel/operator name."""
    low = name.lower()
    if inside_attention or any(w in low for w in _ATTENTION_WORDS):
        return "attention/softmax"
    if any(w in low for w in _MATMUL_WORDS):
        return "matmul"
    return "other"


def _is_annotation(name: str) -> bool:
    return name in ANNOTATIONS or name.startswith("ProfilerStep") or name.startswith("## ")


def _is_python_frame(event: Any) -> bool:
    """Python-function events recorded by ``with_stack`` (not operators; their time would count twice)."""
    if getattr(event, "is_python_function", False):
        return True
    name = event.name
    return ".py(" in name or name.startswith("<built-in") or name.startswith("nn.Module:")


def _inside_attention(event: Any) -> bool:
    parent = getattr(event, "cpu_parent", None)
    while parent is not None:
        low = parent.name.lower()
        if parent.name == "attention" or (
            not _is_python_frame(parent) and any(w in low for w in ("flash", "softmax", "scaleddotproduct"))
        ):
            return True
        parent = getattr(parent, "cpu_parent", None)
    return False


def summarize_events(events: list[Any], on_cuda: bool, steps: int, top_k: int = 15) -> dict[str, Any]:
    """Summary of profiler ``FunctionEvent``s covering ``steps`` steps (times per step, in ms)."""
    from torch.autograd import DeviceType

    by_name: dict[tuple[str, str], dict[str, Any]] = {}  # one row per (name, category)
    by_cat: dict[str, float] = defaultdict(float)
    phases: dict[str, float] = defaultdict(float)
    for e in events:
        is_device = getattr(e, "device_type", DeviceType.CPU) == DeviceType.CUDA
        if e.name in ("forward", "backward", "optimizer") and not is_device:
            phases[e.name] += e.cpu_time_total / 1e3
        if on_cuda != is_device or _is_annotation(e.name) or getattr(e, "is_user_annotation", False):
            continue
        if _is_python_frame(e):
            continue
        us = e.time_range.elapsed_us() if is_device else e.self_cpu_time_total
        if us <= 0:
            continue
        cat = classify(e.name, _inside_attention(e))
        by_cat[cat] += us
        row = by_name.setdefault((e.name, cat), {"name": e.name, "category": cat, "calls": 0, "us": 0.0})
        row["calls"] += 1
        row["us"] += us
    total_us = sum(by_cat.values())
    steps = max(steps, 1)
    top = sorted(by_name.values(), key=lambda r: -r["us"])[:top_k]
    return {
        "time_basis": "CUDA kernel time" if on_cuda else "CPU self time of operators",
        "steps": steps,
        "total_ms_per_step": total_us / 1e3 / steps,
        "categories": [
            {"category": c, "ms_per_step": by_cat.get(c, 0.0) / 1e3 / steps,
             "share": by_cat.get(c, 0.0) / total_us if total_us else 0.0}
            for c in CATEGORIES
        ],
        "top": [
            {"name": r["name"][:120], "category": r["category"], "calls_per_step": r["calls"] / steps,
             "ms_per_step": r["us"] / 1e3 / steps, "share": r["us"] / total_us if total_us else 0.0}
            for r in top
        ],
        "phases_ms_per_step": {k: v / steps for k, v in phases.items()},
    }
