"""Loss over a whole token file (not a sample of batches): the number a run reports as its validation loss."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch


@torch.no_grad()
def evaluate_tokens(
    model: torch.nn.Module,
    data: np.ndarray,
    context_length: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    autocast_bf16: bool = False,
    progress: bool = False,
) -> dict[str, float]:
    """Mean next-token loss over ``data`` cut into non-overlapping windows of ``context_length`` (+1 target).

    Every token after the first of each window is predicted once (the tail shorter than a window is dropped).
    Returns ``{"loss", "ppl", "tokens"}``; ``loss`` is in nats per token.
    """
    from tqdm.auto import tqdm

    from lmfs.nn import cross_entropy

    n_windows = (len(data) - 1) // context_length
    if n_windows < 1:
        raise ValueError(
            f"token array has {len(data)} tokens; context_length {context_length} needs {context_length + 1}"
        )
    device = torch.device(device)
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if autocast_bf16
        else contextlib.nullcontext()
    )
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    starts = np.arange(n_windows) * context_length
    offsets = np.arange(context_length + 1)
    for i in tqdm(range(0, n_windows, batch_size), disable=not progress, desc="eval", unit="batch"):
        idx = starts[i : i + batch_size, None] + offsets[None, :]
        window = torch.from_numpy(np.asarray(data[idx]).astype(np.int64)).to(device)
        x, y = window[:, :-1], window[:, 1:]
        with autocast:
            logits = model(x)
        loss = cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
        total += loss.item() * y.numel()
        count += y.numel()
    model.train(was_training)
    mean = total / count
    return {"loss": mean, "ppl": math.exp(min(mean, 50.0)), "tokens": float(count)}
