"""The run configuration: a dataclass nesting the model's :class:`~lmfs.nn.config.TransformerConfig`, read from a
TOML or JSON file, overridden from the command line.

Layout. ``TrainConfig.model`` is the model (its fields are defined once, in ``lmfs.nn.config``); every other
field belongs to the run. In a file, the ``[model]`` table holds the model's keys; any other table (``[data]``,
``[optim]``, ``[batch]``, ``[run]``, ...) only groups the run's keys for reading. Relative data paths are
resolved against the config file's folder first, then the current directory, then the project root
(``../shared/...`` works from the checkout).

Overrides are ``key=value`` strings (``--set lr=1e-3``), parsed by the field's type, with the same names as in
a file: ``model.d_model=128`` for the model, ``optim.lr=1e-3`` (any table name but ``model``) or plain ``lr``
for the run.

Flat configs. Before the model was nested, its keys sat at the top level of configs and checkpoints. They
still do what they did: a model key outside ``[model]`` (top level or a grouping table) sets the model's field,
and a bare override ``--set d_model=128`` works too. One name belongs to both: ``eps`` (the run's AdamW epsilon
and the model's RMSNorm epsilon). In a file or a stored config, ``eps`` outside ``[model]`` is AdamW's (what it
has always meant there: the flat layout had no model eps); on the command line a bare ``--set eps=...`` is an
error asking for ``model.eps`` or ``optim.eps``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmfs.nn.config import TransformerConfig, config_problems


class ConfigError(ValueError):
    """A bad config file, key or value; the message says which and what to do."""


MODEL_TABLE = "model"


def _default_model() -> TransformerConfig:
    return TransformerConfig(
        vocab_size=10_000, context_length=256, d_model=256, num_layers=4, num_heads=8, d_ff=704
    )


@dataclass
class TrainConfig:
    """Everything a training run needs. Units: steps are optimizer steps; a step sees
    ``batch_size * grad_accum_steps * model.context_length`` tokens."""

    model: TransformerConfig = field(default_factory=_default_model)
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
    eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
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
    parallel: str = "none"  # none | ddp | fsdp | zero1: several processes under torchrun (lmfs.train.distributed)
    threads: int = 0  # torch.set_num_threads; 0 leaves torch's default
    seed: int = 0
    out_dir: str = "runs/train/default"
    resume: bool = True  # continue from the newest checkpoint in out_dir

    # ------------------------------------------------------------------------------------------ derived

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum_steps * self.model.context_length

    @property
    def schedule_cycle(self) -> int:
        return self.cosine_cycle_iters or self.max_steps

    def to_dict(self) -> dict[str, Any]:
        """The nested layout: the run's keys, and the model's under ``"model"``."""
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------------------------------ validation

    def problems(self) -> list[str]:
        """Every bad value: the model's (from TransformerConfig, prefixed ``model:``), then the run's."""
        return [f"{MODEL_TABLE}: {p}" for p in self.model.problems()] + self._run_problems()

    def _run_problems(self) -> list[str]:
        errors: list[str] = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                errors.append(msg)

        for name in ("batch_size", "grad_accum_steps", "max_steps", "eval_batches", "log_interval"):
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
        need(self.lr > 0, f"lr must be > 0 (got {self.lr})")
        need(0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr={self.lr}] (got {self.min_lr})")
        cycle = (
            f"cosine_cycle_iters={self.cosine_cycle_iters}"
            if self.cosine_cycle_iters
            else f"max_steps={self.max_steps}, the run's length"
        )
        need(
            self.warmup_iters <= self.schedule_cycle,
            f"warmup_iters ({self.warmup_iters}) must not exceed the cosine cycle ({cycle}): lower warmup_iters "
            f"(--set warmup_iters={self.schedule_cycle}) or raise "
            f"{'cosine_cycle_iters' if self.cosine_cycle_iters else 'max_steps'}",
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
        need(
            self.parallel in ("none", "ddp", "fsdp", "zero1"),
            f"parallel must be none, ddp, fsdp or zero1 (got {self.parallel!r})",
        )
        dev = self.device.split(":")[0]
        need(
            dev in ("cpu", "cuda", "mps", "auto"),
            f"device must be cpu, cuda[:N], mps or auto (got {self.device!r})",
        )
        return errors

    def validate(self) -> TrainConfig:
        """Raise ConfigError listing every bad value; returns self for chaining."""
        errors = self.problems()
        if errors:
            raise ConfigError(_listing(errors))
        return self


PATH_FIELDS = ("train_data", "val_data", "tokenizer")
#: the run's own fields (everything but the nested model)
_RUN = {f.name: f for f in dataclasses.fields(TrainConfig) if f.name != MODEL_TABLE}
_RUN_HINTS = typing.get_type_hints(TrainConfig)
_MODEL = {f.name: f for f in dataclasses.fields(TransformerConfig)}
_MODEL_HINTS = typing.get_type_hints(TransformerConfig)


def _listing(errors: list[str]) -> str:
    return "invalid train config:\n  - " + "\n  - ".join(errors)


# ----------------------------------------------------------------------------------------------- keys


def _unknown(key: str, where: str, names: list[str] | None = None) -> ConfigError:
    names = names if names is not None else [*_RUN, *_MODEL]
    close = difflib.get_close_matches(key.rpartition(".")[2], names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(names)}"
    return ConfigError(f"unknown config key {key!r} in {where}{hint}")


def _ambiguous(key: str, where: str) -> ConfigError:
    def said(f: dataclasses.Field, owner: str) -> str:
        return f.metadata.get("help") or f"{owner}.{key}"

    return ConfigError(
        f"{key!r} in {where} is ambiguous: the model and the run both have it; write "
        f"{MODEL_TABLE}.{key}=... for the model's ({said(_MODEL[key], 'TransformerConfig')}) or "
        f"optim.{key}=... for the run's ({said(_RUN[key], 'TrainConfig')})"
    )


def _target(key: str, table: str | None, where: str, *, bare_is_ambiguous: bool) -> bool:
    """Whether ``key``, found in ``table`` (None: at the top level), is the model's (else the run's)."""
    if table == MODEL_TABLE:
        if key not in _MODEL:
            raise _unknown(f"{MODEL_TABLE}.{key}", where, list(_MODEL))
        return True
    if key in _RUN:
        if bare_is_ambiguous and table is None and key in _MODEL:
            raise _ambiguous(key, where)
        return False
    if key in _MODEL:  # the flat layout: a model key outside [model]
        return True
    raise _unknown(key, where if table is None else f"{where} [{table}]")


def _coerce(label: str, hint: Any, value: Any, where: str) -> Any:
    """``value`` (from a file or a ``key=value`` string) as a field of type ``hint`` (``label`` names it)."""
    optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if typing.get_origin(base) is typing.Literal:  # e.g. norm: the allowed values are the config's to check
        base = str
    if isinstance(value, str) and base is not str:
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        if base is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{label} in {where} must be true or false (got {value!r})")
        try:
            value = float(text) if base is float else int(float(text)) if "e" in text.lower() else int(text)
        except ValueError:
            kind = "a number" if base is float else "an integer"
            raise ConfigError(f"{label} in {where} must be {kind} (got {value!r})") from None
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{label} in {where} cannot be empty")
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{label} in {where} must be true or false (got {value!r})")
    if base is int:
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            raise ConfigError(f"{label} in {where} must be an integer (got {value!r})")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{label} in {where} must be a number (got {value!r})")
        return float(value)
    if base is str and not isinstance(value, str):
        raise ConfigError(f"{label} in {where} must be a string (got {value!r})")
    return value


class _Values:
    """The run's and the model's values read so far, each key at most once."""

    def __init__(self, where: str, *, bare_is_ambiguous: bool = False) -> None:
        self.where, self.bare_is_ambiguous = where, bare_is_ambiguous
        self.run: dict[str, Any] = {}
        self.model: dict[str, Any] = {}

    def put(self, key: str, value: Any, table: str | None, *, once: bool = True) -> None:
        if table is None and "." in key:  # a dotted name: model.d_model, optim.eps
            table, _, key = key.partition(".")
            if "." in key:
                raise ConfigError(f"{table}.{key} in {self.where}: tables nest one level at most")
        is_model = _target(key, table, self.where, bare_is_ambiguous=self.bare_is_ambiguous)
        dest, label, hint = (
            (self.model, f"{MODEL_TABLE}.{key}", _MODEL_HINTS[key])
            if is_model
            else (self.run, key, _RUN_HINTS[key])
        )
        if once and key in dest:
            raise ConfigError(f"{self.where}: key {label!r} is set twice")
        dest[key] = _coerce(label, hint, value, self.where)


def _read(data: Mapping[str, Any], where: str) -> _Values:
    values = _Values(where)
    for key, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    raise ConfigError(f"{where}: tables nest one level at most ([{key}] holds [{k}])")
                values.put(k, v, key)
        else:
            values.put(key, value, None)
    return values


def _read_overrides(overrides: list[str]) -> _Values:
    values = _Values("--set", bare_is_ambiguous=True)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value (e.g. --set lr=3e-4)")
        values.put(key, value, None, once=False)
    for key in PATH_FIELDS:
        if key in values.run:
            values.run[key] = _resolve_path(values.run[key], None)
    return values


def _assemble(run: dict[str, Any], model: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (default: the defaults) with these run and model values; ConfigError when the model is invalid."""
    base = base if base is not None else TrainConfig()
    fields = {**base.model.to_dict(), **model}
    problems = config_problems(fields)
    if problems:  # the model cannot exist; list its problems with the run's
        rest = dataclasses.replace(base, **run)
        raise ConfigError(_listing([f"{MODEL_TABLE}: {p}" for p in problems] + rest._run_problems()))
    return dataclasses.replace(base, model=TransformerConfig(**fields), **run)


def nested_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """A stored run config (a checkpoint's ``config``, a ``config.json``, a ``summary.json``'s ``config``) in the
    nested layout: ``{"model": {...}, <the run's keys>}``, without validation (unknown keys stay as they are).

    Configs written before the model was nested keep the model's keys at the top level; they move under
    ``"model"``, except ``eps``, which at the top level was always AdamW's (the flat layout had no model eps).
    """
    stored = data.get(MODEL_TABLE)
    model = dict(stored) if isinstance(stored, Mapping) else {}
    run: dict[str, Any] = {}
    for key, value in data.items():
        if key == MODEL_TABLE:
            continue
        if key in _MODEL and key not in _RUN:
            model.setdefault(key, value)
        else:
            run[key] = value
    return {MODEL_TABLE: model, **run}


# ----------------------------------------------------------------------------------------------- files


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


def _read_resolved(data: Mapping[str, Any], where: str, base: Path | None) -> _Values:
    values = _read(data, where)
    for key in PATH_FIELDS:
        if key in values.run:
            values.run[key] = _resolve_path(values.run[key], base)
    return values


def config_from_dict(data: Mapping[str, Any], where: str = "config", base: Path | None = None) -> TrainConfig:
    """A TrainConfig from a dict in the nested or the flat layout (tables allowed); paths resolved against
    ``base``. The run's values are checked by :meth:`TrainConfig.validate`; a model that cannot be built
    raises ConfigError here."""
    values = _read_resolved(data, where, base)
    return _assemble(values.run, values.model)


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
    values = _read_resolved(data, str(path or "defaults"), base)
    changes = _read_overrides(overrides or [])
    # the overrides apply before the model is built, so one may fix what the file got wrong
    return _assemble({**values.run, **changes.run}, {**values.model, **changes.model}).validate()


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """A copy of ``cfg`` with each ``key=value`` applied (relative paths resolved against the cwd)."""
    changes = _read_overrides(overrides)
    return _assemble(changes.run, changes.model, base=cfg)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write ``cfg`` as JSON (nested layout) atomically."""
    from lmfs.atomic import write_json_atomic

    write_json_atomic(path, cfg.to_dict(), indent=2)


__all__ = [
    "ConfigError",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "nested_config",
    "save_config",
]
