"""Token files and random training batches.

A token file is a flat array of token ids: a ``.npy`` file (its dtype is in the header) or a raw ``.bin`` file
(dtype given by the caller, ``uint16`` by default). Both are memory-mapped, so a corpus larger than RAM works.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch


def load_tokens(path: str | os.PathLike, dtype: str | np.dtype = "uint16") -> np.ndarray:
    """Memory-map a token file (``.npy`` or raw ``.bin``) as a read-only 1-D array.

    ``dtype`` applies to raw files only (a ``.npy`` header carries its own). Raises FileNotFoundError or
    ValueError naming the file and what to do.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"token file not found: {p} (write one with the tokenizer, e.g. `lmfs tokenize`, or fix the path "
            "in your train config)"
        )
    if p.suffix == ".npy":
        arr = np.load(p, mmap_mode="r")
    else:
        dt = np.dtype(dtype)
        size = p.stat().st_size
        if size % dt.itemsize:
            raise ValueError(
                f"token file {p} has {size} bytes, not a multiple of {dt.itemsize} ({dt.name}); "
                "is data_dtype right for this file?"
            )
        if size == 0:
            raise ValueError(f"token file {p} is empty")
        arr = np.memmap(p, dtype=dt, mode="r")
    if arr.ndim != 1:
        raise ValueError(
            f"token file {p} holds an array of shape {arr.shape}; expected a flat 1-D array of ids"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"token file {p} has dtype {arr.dtype}; expected an integer dtype")
    return arr


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``device`` and check that this machine can use it.

    Raises RuntimeError (what was asked, why it is unusable, what to do) for CUDA/MPS devices that are not there.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise RuntimeError(f"invalid device {device!r}: {exc} (use 'cpu', 'cuda', 'cuda:0', 'mps')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {device!r} is not usable: no CUDA device on this machine (torch built without CUDA, or "
                "no GPU visible); use --device cpu (or auto)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device!r} is not usable: invalid device ordinal, this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RuntimeError(f"device {device!r} is not usable: MPS is not available here; use 'cpu'")
    elif dev.type != "cpu":
        raise RuntimeError(f"device {device!r} is not supported by lmfs (use 'cpu', 'cuda[:N]' or 'mps')")
    return dev


def get_batch(
    dataset: npt.NDArray,
    batch_size: int,
    context_length: int,
    device: str | torch.device,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``batch_size`` windows uniformly from every valid start of ``dataset``.

    Args:
        dataset: 1-D integer array (or memmap) of token ids, length n.
        batch_size, context_length: B and T.
        device: where to put the result.
        generator: CPU ``torch.Generator`` for the start positions (global RNG when None); saving its state
            lets a resumed run draw exactly the batches an uninterrupted one would.

    Returns:
        ``(x, y)``, int64 tensors of shape (B, T) on ``device`` with ``y[:, t] == x[:, t + 1]`` in the data
        (y is x shifted by one). Starts are uniform over ``0 .. n - T - 1``.
    """
    dev = resolve_device(device)
    if not isinstance(dataset, np.ndarray):
        dataset = np.asarray(dataset)
    if dataset.ndim != 1:
        raise ValueError(f"dataset must be a 1-D array of token ids, got shape {dataset.shape}")
    if batch_size <= 0 or context_length <= 0:
        raise ValueError(f"batch_size ({batch_size}) and context_length ({context_length}) must be positive")
    n = len(dataset)
    if n < context_length + 1:
        raise ValueError(
            f"token array has {n} tokens but context_length {context_length} needs at least {context_length + 1} "
            "(inputs plus the shifted target); use a bigger token file or a smaller context_length"
        )
    starts = torch.randint(0, n - context_length, (batch_size,), generator=generator).numpy()
    index = starts[:, None] + np.arange(context_length + 1)[None, :]
    window = torch.from_numpy(np.asarray(dataset[index]).astype(np.int64))  # (B, T+1)
    x, y = window[:, :-1], window[:, 1:]
    if dev.type == "cuda":
        return x.pin_memory().to(dev, non_blocking=True), y.pin_memory().to(dev, non_blocking=True)
    return x.contiguous().to(dev), y.contiguous().to(dev)
