"""Training: batches from token memmaps, atomic checkpoints, the run config and the training loop."""

from lmfs.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from lmfs.train.config import ConfigError, TrainConfig, apply_overrides, load_config
from lmfs.train.data import get_batch, load_tokens
from lmfs.train.loop import NonFiniteLossError, TrainResult, evaluate, train
from lmfs.train.metrics import read_metrics

__all__ = [
    "CheckpointError",
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "evaluate",
    "get_batch",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "load_tokens",
    "read_checkpoint",
    "read_metrics",
    "save_checkpoint",
    "train",
]
