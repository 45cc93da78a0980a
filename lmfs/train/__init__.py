"""Training: batches from token memmaps, atomic checkpoints (and the model rebuilt from one), the run config
and the training loop."""

from lmfs.train.checkpoint import (
    CheckpointError,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from lmfs.train.config import ConfigError, TrainConfig, apply_overrides, load_config, nested_config
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
    "find_checkpoint",
    "get_batch",
    "latest_checkpoint",
    "load_checkpoint",
    "load_config",
    "load_model",
    "load_tokens",
    "nested_config",
    "read_checkpoint",
    "read_metrics",
    "save_checkpoint",
    "train",
]
