"""Alignment checkpoints: lmfs training checkpoints (atomic, with optimizer and RNG states) whose ``extra``
carries what is needed to rebuild the model and its tokenizer without the run's config (``extra["align"]``) and
the trainer's position and rollout buffer (``extra["state"]``), so a killed run resumes bit-exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lmfs.train.checkpoint import (
    checkpoint_path,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
)


def align_meta(lm: Any, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "model_config": lm.model.config.to_dict(),
        "tokenizer": lm.spec,
        "name": lm.name,
        "stop_token_ids": list(lm.stop_token_ids),
        "chat_template": lm.chat_template,
    }


def save(out_dir: Path, lm: Any, optimizer: Any, iteration: int, cfg: dict[str, Any], kind: str,
         generator: torch.Generator, state: dict[str, Any], keep: int) -> Path:
    folder = Path(out_dir) / "checkpoints"
    path = checkpoint_path(folder, iteration)
    save_checkpoint(lm.model, optimizer, iteration, path, config=cfg, generator=generator,
                    extra={"align": align_meta(lm, kind), "state": state})
    prune_checkpoints(folder, keep)
    return path


def latest(out_dir: Path) -> Path | None:
    folder = Path(out_dir) / "checkpoints"
    remove_stale_temp_files(folder)
    return latest_checkpoint(folder)


def model_from_payload(payload: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """(model in eval mode, tokenizer, align metadata) of an alignment checkpoint payload."""
    from lmfs.align.models import tokenizer_from_spec
    from lmfs.nn import TransformerConfig, TransformerLM

    meta = payload["extra"]["align"]
    model = TransformerLM(TransformerConfig.from_dict(meta["model_config"]))
    model.load_state_dict(payload["model"])
    return model.eval(), tokenizer_from_spec(meta["tokenizer"]), meta


def load_lm(path: str | Path) -> Any:
    from lmfs.align.models import LoadedModel
    from lmfs.train.checkpoint import find_checkpoint

    payload = read_checkpoint(find_checkpoint(path))
    if "align" not in (payload.get("extra") or {}):
        raise ValueError(f"{path} is not an alignment checkpoint")
    model, tok, meta = model_from_payload(payload)
    return LoadedModel(model, tok, meta.get("name", "model"), meta.get("stop_token_ids", []),
                       meta.get("chat_template"), meta.get("tokenizer", {}))
