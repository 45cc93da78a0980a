"""The run configuration: one flat dataclass, read from a TOML or JSON file, overridden from the command line.

A config file may group keys in tables (``[model]``, ``[data]``, ``[optim]``, ...); the tables are only for
reading, every key is a field of :class:`TrainConfig`. Relative data paths are resolved against the config
file's folder first, then the current directory, then the project root (``../shared/...`` works from the
checkout). Overrides are ``key=value`` strings (``--set lr=1e-3``), parsed by the field's type.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A bad config file, key or value; the message says which and what to do."""


@dataclass
class TrainConfig:
    """Everything a training run needs. Units: steps are optimizer steps; a step sees
    ``batch_size * grad_accum_steps * context_length`` tokens."""

    # model (mirrors lmfs.nn.TransformerConfig)
    vocab_size: int = 10_000
    context_length: int = 256
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 8
    d_ff: int = 704
    rope_theta: float = 10_000.0
    num_kv_heads: int | None = None
    tie_embeddings: bool = False
    norm: str = "pre"
    position: str = "rope"
    ffn: str = "swiglu"
    # data
    train_data: str = ""
    val_data: str = ""
    data_dtype: str = "uint16"  # for raw .bin token files (.npy carry their dtype)
    tokenizer: str = ""  # tokenizer folder, recorded for `lmfs generate`
    # optimizer and schedule
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    cosine_cycle_iters: int = 0  # 0: the whole run (max_steps)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # global L2 norm; 0 disables clipping
    # batch
    batch_size: int = 32
    grad_accum_steps: int = 1
    max_steps: int = 1000
    max_wall_seconds: float = (
        0.0  # stop (with a checkpoint and a final eval) after this much training time; 0: no limit
    )
    # evaluation, logging, checkpoints
    eval_interval: int = 100  # 0: only at the end
    eval_batches: int = 20
    log_interval: int = 10
    ckpt_interval: int = 200  # 0: only at the end
    keep_checkpoints: int = 2  # 0: keep all
    tensorboard: bool = True
    # execution
    device: str = "cpu"  # cpu | cuda | cuda:N | mps | auto
    dtype: str = "float32"  # parameter dtype: float32 | bfloat16
    autocast_bf16: bool = False  # bf16 autocast of the forward pass
    compile: bool = False  # torch.compile the model
    threads: int = 0  # torch.set_num_threads; 0 leaves torch's default
    seed: int = 0
    out_dir: str = "runs/train/default"
    resume: bool = True  # continue from the newest checkpoint in out_dir

    # ------------------------------------------------------------------------------------------ derived

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum_steps * self.context_length

    @property
    def schedule_cycle(self) -> int:
        return self.cosine_cycle_iters or self.max_steps

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``lmfs.nn.TransformerConfig``."""
        return {k: getattr(self, k) for k in MODEL_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------------------------------ validation

    def validate(self) -> TrainConfig:
        """Raise ConfigError listing every bad value; returns self for chaining."""
        errors: list[str] = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                errors.append(msg)

        for name in (
            "vocab_size",
            "context_length",
            "d_model",
            "num_layers",
            "num_heads",
            "d_ff",
            "batch_size",
            "grad_accum_steps",
            "max_steps",
            "eval_batches",
            "log_interval",
        ):
            need(getattr(self, name) > 0, f"{name} must be a positive integer (got {getattr(self, name)})")
        for name in (
            "warmup_iters",
            "cosine_cycle_iters",
            "eval_interval",
            "ckpt_interval",
            "keep_checkpoints",
            "threads",
        ):
            need(getattr(self, name) >= 0, f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.num_heads > 0:
            need(
                self.d_model % self.num_heads == 0,
                f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
            )
            if self.d_model % self.num_heads == 0:
                need(
                    (self.d_model // self.num_heads) % 2 == 0,
                    f"head size d_model/num_heads = {self.d_model // self.num_heads} must be even for RoPE",
                )
        if self.num_kv_heads is not None:
            need(
                self.num_kv_heads > 0 and self.num_heads % self.num_kv_heads == 0,
                f"num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})",
            )
        need(self.rope_theta > 0, f"rope_theta must be > 0 (got {self.rope_theta})")
        need(
            self.norm in ("pre", "post", "none"), f"norm must be 'pre', 'post' or 'none' (got {self.norm!r})"
        )
        need(self.position in ("rope", "none"), f"position must be 'rope' or 'none' (got {self.position!r})")
        need(self.ffn in ("swiglu", "silu"), f"ffn must be 'swiglu' or 'silu' (got {self.ffn!r})")
        need(self.lr > 0, f"lr must be > 0 (got {self.lr})")
        need(0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr={self.lr}] (got {self.min_lr})")
        need(
            self.warmup_iters <= self.schedule_cycle,
            f"warmup_iters ({self.warmup_iters}) must not exceed the cosine cycle ({self.schedule_cycle})",
        )
        need(self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})")
        need(
            0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
            f"beta1, beta2 must be in [0, 1) (got {self.beta1}, {self.beta2})",
        )
        need(self.eps > 0, f"eps must be > 0 (got {self.eps})")
        need(
            self.max_wall_seconds >= 0,
            f"max_wall_seconds must be >= 0 (0 = no limit; got {self.max_wall_seconds})",
        )
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables; got {self.grad_clip})")
        need(
            self.dtype in ("float32", "bfloat16"),
            f"dtype must be 'float32' or 'bfloat16' (got {self.dtype!r})",
        )
        need(
            self.data_dtype in ("uint16", "uint32", "int32", "int64"),
            f"data_dtype must be uint16, uint32, int32 or int64 (got {self.data_dtype!r})",
        )
        need(bool(self.train_data), "train_data is empty: set it to a token file (.npy or .bin)")
        need(bool(self.out_dir), "out_dir is empty: set it to the run folder")
        dev = self.device.split(":")[0]
        need(
            dev in ("cpu", "cuda", "mps", "auto"),
            f"device must be cpu, cuda[:N], mps or auto (got {self.device!r})",
        )
        if errors:
            raise ConfigError("invalid train config:\n  - " + "\n  - ".join(errors))
        return self


MODEL_FIELDS = (
    "vocab_size",
    "context_length",
    "d_model",
    "num_layers",
    "num_heads",
    "d_ff",
    "rope_theta",
    "num_kv_heads",
    "tie_embeddings",
    "norm",
    "position",
    "ffn",
)
PATH_FIELDS = ("train_data", "val_data", "tokenizer")
_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_HINTS = typing.get_type_hints(TrainConfig)


# ----------------------------------------------------------------------------------------------- parsing


def _unknown(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(_FIELDS), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(_FIELDS)}"
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def _coerce(key: str, value: Any, where: str) -> Any:
    """``value`` (from a file or a ``key=value`` string) as the type of field ``key``."""
    hint = _HINTS[key]
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if isinstance(value, str) and base is not str:
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        if base is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key} in {where} must be true or false (got {value!r})")
        try:
            value = float(text) if base is float else int(float(text)) if "e" in text.lower() else int(text)
        except ValueError:
            kind = "a number" if base is float else "an integer"
            raise ConfigError(f"{key} in {where} must be {kind} (got {value!r})") from None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} in {where} cannot be empty")
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} in {where} must be true or false (got {value!r})")
    if base is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"{key} in {where} must be an integer (got {value!r})")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} in {where} must be a number (got {value!r})")
        return float(value)
    if base is str and not isinstance(value, str):
        raise ConfigError(f"{key} in {where} must be a string (got {value!r})")
    return value


def _flatten(data: dict[str, Any], where: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for k, v in items:
            if isinstance(v, dict):
                raise ConfigError(f"{where}: tables nest one level at most ([{key}] holds [{k}])")
            if k in flat:
                raise ConfigError(f"{where}: key {k!r} is set twice")
            flat[k] = v
    return flat


def _resolve_path(value: str, base: Path | None) -> str:
    if not value:
        return value
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    from lmfs.paths import project_root

    for root in [base, Path.cwd(), project_root()]:
        if root is not None and (root / p).exists():
            return str((root / p).resolve())
    return value  # left as given; train() reports it missing with the full name


def config_from_dict(data: dict[str, Any], where: str = "config", base: Path | None = None) -> TrainConfig:
    """A TrainConfig from a (possibly table-grouped) dict; paths resolved against ``base``."""
    values: dict[str, Any] = {}
    for key, value in _flatten(data, where).items():
        if key not in _FIELDS:
            raise _unknown(key, where)
        values[key] = _coerce(key, value, where)
    for key in PATH_FIELDS:
        if key in values:
            values[key] = _resolve_path(values[key], base)
    return TrainConfig(**values)


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read ``path`` (.toml or .json; None for defaults), apply ``key=value`` overrides, validate."""
    data: dict[str, Any] = {}
    base = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            if p.suffix == ".json":
                data = json.loads(p.read_text(encoding="utf-8"))
            else:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot parse config file {p}: {exc}") from None
        base = p.resolve().parent
    cfg = config_from_dict(data, where=str(path or "defaults"), base=base)
    return apply_overrides(cfg, overrides or []).validate()


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """A copy of ``cfg`` with each ``key=value`` applied (relative paths resolved against the cwd)."""
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value (e.g. --set lr=3e-4)")
        if key not in _FIELDS:
            raise _unknown(key, "--set")
        changes[key] = _coerce(key, value, "--set")
        if key in PATH_FIELDS:
            changes[key] = _resolve_path(changes[key], None)
    return dataclasses.replace(cfg, **changes)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as JSON atomically."""
    from lmfs.atomic import write_json_atomic

    write_json_atomic(path, cfg.to_dict(), indent=2)


__all__ = ["ConfigError", "TrainConfig", "apply_overrides", "config_from_dict", "load_config", "save_config"]
