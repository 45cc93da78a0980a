"""Who ran a benchmark: a stable ``machine_id`` and the facts that make numbers comparable.

``machine_id`` is ``cuda-h100`` / ``cuda-h200`` (``cuda-<gpu slug>`` for other cards) when CUDA is available,
else ``cpu-<cpu model slug>-<n>c`` (n = usable cores). ``$LMFS_MACHINE_ID`` overrides it. Numbers are only
ever compared within one machine_id.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

_NOISE = re.compile(r"\(r\)|\(tm\)|\bcpu\b|\bprocessor\b|@.*$|\b\d+-core\b", re.IGNORECASE)


def slug(text: str, max_len: int = 40) -> str:
    """``"AMD EPYC 7B13 64-Core Processor"`` -> ``"amd-epyc-7b13"``."""
    s = _NOISE.sub(" ", text.lower())
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")
    return s[:max_len].strip("-") or "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cuda_device_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:
        return None
    return None


def gpu_slug(name: str) -> str:
    """``"NVIDIA H100 80GB HBM3"`` -> ``"h100"``; ``"NVIDIA H200"`` -> ``"h200"``; others slugged."""
    m = re.search(r"\b([AHBL]\d{2,3}[a-z]?)\b", name, re.IGNORECASE)
    if m:
        return m.group(1).lower()
    return slug(name.replace("NVIDIA", ""))


def machine_id(device_name: str | None = None, *, use_cuda: bool = True) -> str:
    env = os.environ.get("LMFS_MACHINE_ID")
    if env:
        return env
    gpu = device_name if device_name is not None else (cuda_device_name() if use_cuda else None)
    if gpu:
        return f"cuda-{gpu_slug(gpu)}"
    return f"cpu-{slug(cpu_model())}-{cpu_count()}c"


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", None))
    except Exception:
        return None


def thread_info() -> dict[str, Any]:
    """Torch threads and the env variables that pin them; ``threads_pinned`` is True when torch uses fewer
    threads than cores or an env variable fixes the count."""
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LMFS_THREADS") if k in os.environ}
    threads = None
    try:
        import torch

        threads = torch.get_num_threads()
    except Exception:
        pass
    pinned = bool(env) or (threads is not None and threads < cpu_count())
    return {"torch_threads": threads, "thread_env": env, "threads_pinned": pinned}


#: what is *not* source for the ``-dirty`` flag: generated/committed data and prose (git pathspecs)
NON_SOURCE_PATHSPECS = (
    ":(exclude)reports", ":(exclude)runs", ":(exclude)docs", ":(exclude,glob)**/*.md", ":(exclude).ci",
    ":(exclude)noxfile.py", ":(exclude).gitignore",
)


def git_commit(root: Path | None = None) -> tuple[str | None, bool]:
    """``(short hash, dirty)`` of the checkout at ``root``; ``(None, False)`` outside git.

    Dirty means tracked *source* differs from HEAD: untracked files, the ``reports/`` data (bench store, unit
    tables, written by lmfs's own commands), ``runs/``, Markdown prose and the CI/nox scripts are not source (see
    :data:`NON_SOURCE_PATHSPECS`), so a run is stored ``-dirty`` only when the code that ran is not HEAD's."""
    env_commit = os.environ.get("LMFS_COMMIT")
    if env_commit:
        return env_commit.removesuffix("-dirty")[:12], env_commit.endswith("-dirty")
    cwd = str(root) if root else None
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=20
        )
        if head.returncode != 0:
            return None, False
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, timeout=20
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *NON_SOURCE_PATHSPECS],
            cwd=top.stdout.strip() or cwd, capture_output=True, text=True, timeout=60,
        )
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, False


#: a run is "under load" when the 1-minute load average exceeds this many runnable tasks per usable core
LOADED_PER_CPU = 1.0


def load_snapshot() -> list[float] | None:
    """``[1-min, 5-min, 15-min]`` load averages now, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def load_record(start: list[float] | None, end: list[float] | None) -> dict[str, Any]:
    """The optional top-level ``load`` key of a stored run: load averages at its start and end, usable cores."""
    return {"start": start, "end": end, "cpus": cpu_count()}


def run_load(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A stored run's load, tolerating its absence (older runs) or a malformed value: ``{"start", "end",
    "cpus", "peak" (highest 1-min figure), "loaded" (peak > cpus × LOADED_PER_CPU)}`` or None."""
    rec = doc.get("load") if isinstance(doc, dict) else None
    if not isinstance(rec, dict):
        return None

    def triple(x: Any) -> list[float] | None:
        if isinstance(x, list | tuple) and x and all(isinstance(v, int | float) for v in x):
            return [float(v) for v in x]
        return None

    start, end = triple(rec.get("start")), triple(rec.get("end"))
    cpus = rec.get("cpus")
    if not isinstance(cpus, int) or cpus < 1:
        cpus = (doc.get("machine_info") or {}).get("cpu_count")
    if (start is None and end is None) or not isinstance(cpus, int) or cpus < 1:
        return None
    peak = max(x[0] for x in (start, end) if x is not None)
    return {"start": start, "end": end, "cpus": cpus, "peak": peak, "loaded": peak > cpus * LOADED_PER_CPU}


def format_load(load: dict[str, Any] | None) -> str:
    """``load 2.41 → 3.10 (1-min; 2 cpus) UNDER LOAD`` or ``load not recorded``."""
    if not load:
        return "load not recorded"

    def one(x: list[float] | None) -> str:
        return "?" if x is None else f"{x[0]:.2f}"

    text = f"load {one(load['start'])} → {one(load['end'])} (1-min average; {load['cpus']} cpus)"
    return text + (" UNDER LOAD" if load["loaded"] else "")


def machine_info() -> dict[str, Any]:
    """The lmfs facts added to pytest-benchmark's ``machine_info``."""
    gpu = cuda_device_name()
    info: dict[str, Any] = {
        "machine_id": machine_id(gpu),
        "device": gpu or cpu_model(),
        "cpu_model": cpu_model(),
        "cpu_count": cpu_count(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "triton": _version("triton"),
        "numpy": _version("numpy"),
    }
    info.update(thread_info())
    return info
