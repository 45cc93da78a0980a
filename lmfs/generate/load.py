"""Loading what generation needs from a training run: the model from a checkpoint, and the run's tokenizer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

EOT = "<|endoftext|>"


def find_checkpoint(path: str | os.PathLike) -> Path:
    """``path`` itself when it is a file; for a run folder (or its ``checkpoints/``), the newest checkpoint."""
    from lmfs.train.checkpoint import latest_checkpoint

    p = Path(path)
    if p.is_file():
        return p
    for folder in (p / "checkpoints", p):
        found = latest_checkpoint(folder)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"no checkpoint at {p}: pass a checkpoint file or a run folder with checkpoints/ckpt_*.pt"
    )


def load_model(
    checkpoint: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the TransformerLM a training run saved and load its weights.

    Returns ``(model in eval mode, the run's config dict)``.
    """
    from lmfs.nn import TransformerConfig, TransformerLM
    from lmfs.train.checkpoint import CheckpointError, read_checkpoint
    from lmfs.train.config import MODEL_FIELDS

    path = find_checkpoint(checkpoint)
    payload = read_checkpoint(path, map_location=device)
    cfg = payload.get("config")
    if not cfg:
        raise CheckpointError(
            f"{path} has no run config (was it written by `lmfs train`?); cannot rebuild the model"
        )
    model = TransformerLM(TransformerConfig(**{k: cfg[k] for k in MODEL_FIELDS if k in cfg}), device=device)
    model.load_state_dict(payload["model"])
    model.eval()
    return model, cfg


def load_run_tokenizer(cfg: dict[str, Any], override: str | os.PathLike | None = None) -> Any:
    """The tokenizer of a run: ``override`` if given, else the folder recorded as ``tokenizer`` in its config."""
    from lmfs.tokenizer.formats import load_tokenizer

    folder = override or cfg.get("tokenizer")
    if not folder:
        raise FileNotFoundError(
            "this run records no tokenizer; pass --tokenizer FOLDER (the folder with vocab.json and merges.txt)"
        )
    return load_tokenizer(folder)


def eot_id(tokenizer: Any) -> int | None:
    """The id of ``<|endoftext|>`` in ``tokenizer``, or None."""
    specials = getattr(tokenizer, "special_to_id", None)
    if isinstance(specials, dict) and EOT in specials:
        return int(specials[EOT])
    return None
