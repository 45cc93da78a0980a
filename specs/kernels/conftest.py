"""Kernel specs run the Triton kernels through Triton's CPU interpreter when there is no GPU.

``TRITON_INTERPRET`` must be set before any Triton kernel module is imported (``triton.jit`` reads it when it
decorates), so it is set here, at collection time, and only when CUDA is absent: on a GPU the same specs run the
compiled kernels.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

HAS_TRITON = importlib.util.find_spec("triton") is not None


@pytest.fixture(scope="session")
def triton_device() -> str:
    """Where the Triton specs put their tensors: CUDA when present, else the CPU (interpreter)."""
    if not HAS_TRITON:
        pytest.skip("triton is not installed (pip install 'lmfs[triton]')")
    return "cuda" if torch.cuda.is_available() else "cpu"
