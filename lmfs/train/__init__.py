"""Training: batches from token memmaps, atomic checkpoints, the run config and the training loop."""

from __future__ import annotations

from lmfs._lazy import lazy_exports

_EXPORTS = {
    "CheckpointError": "lmfs.train.checkpoint",
    "ConfigError": "lmfs.train.config",
    "NonFiniteLossError": "lmfs.train.loop",
    "TrainConfig": "lmfs.train.config",
    "TrainResult": "lmfs.train.loop",
    "apply_overrides": "lmfs.train.config",
    "evaluate": "lmfs.train.loop",
    "get_batch": "lmfs.train.data",
    "latest_checkpoint": "lmfs.train.checkpoint",
    "load_checkpoint": "lmfs.train.checkpoint",
    "load_config": "lmfs.train.config",
    "load_tokens": "lmfs.train.data",
    "read_checkpoint": "lmfs.train.checkpoint",
    "read_metrics": "lmfs.train.metrics",
    "save_checkpoint": "lmfs.train.checkpoint",
    "train": "lmfs.train.loop",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
