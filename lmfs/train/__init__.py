"""Training: batches from token memmaps, atomic checkpoints, the run config and the training loop."""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use, so `import lmfs.<unit>.cli` (and `lmfs --help`) does not pull in torch.
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
