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


def git_commit(root: Path | None = None) -> tuple[str | None, bool]:
    """``(short hash, dirty)`` of the checkout at ``root``; ``(None, False)`` outside git.

    Dirty means tracked files differ from HEAD (untracked files are ignored)."""
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
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=60,
        )
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, False


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
