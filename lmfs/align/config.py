"""Configs of the alignment trainers: one TOML file, tables ``[run] [model] [task] [optim]`` and one per trainer
(``[sft] [ei] [grpo] [dpo]``). Every key has a default here; an unknown table or key is an error that names it.
Relative paths (``run.out_dir``, ``run.init``, ``sft.data``) are taken from the working directory."""

from __future__ import annotations

import copy
import os
import tomllib
from pathlib import Path
from typing import Any

KINDS = ("sft", "ei", "dpo", "grpo")

DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {
        "kind": "sft",
        "out_dir": "runs/align/run",
        "seed": 0,
        "threads": 1,
        "init": "scratch",  # scratch | smollm2 | a .gguf file | an lmfs checkpoint (align run folder)
        "init_optimizer": False,  # also start from the init checkpoint's optimizer state (AdamW moments)
        "rollout_backend": "auto",  # auto (the inference engine when installed) | engine | builtin
        "ckpt_every": 20,  # optimizer updates (GRPO, SFT, DPO) or rounds (EI) between checkpoints
        "keep_checkpoints": 2,
        "eval_every": 50,
        "tensorboard": True,
        "name": "",
    },
    "model": {  # the shape of a model trained from scratch (init = "scratch")
        "d_model": 128,
        "num_layers": 2,
        "num_heads": 4,
        "d_ff": 384,
        "context_length": 32,
        "rope_theta": 10000.0,
    },
    "task": {"name": "addition", "digits": 2, "heldout_size": 500, "seed": 1234, "reward": "addition",
             "eval_max_tokens": 0},
    "optim": {"lr": 1e-3, "min_lr": 1e-4, "warmup": 20, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.98,
              "grad_clip": 1.0},
    "sft": {"steps": 200, "batch_size": 32, "grad_accum": 1, "data": ""},
    "ei": {"rounds": 3, "prompts_per_round": 128, "samples_per_prompt": 4, "temperature": 1.0,
           "sft_steps_per_round": 40, "batch_size": 32},
    "grpo": {
        "steps": 100,
        "prompts_per_step": 16,
        "group_size": 8,
        "loss_type": "grpo_clip",  # no_baseline | reinforce_with_baseline | grpo_clip
        "epochs": 1,  # passes over each rollout batch (> 1: off-policy updates after the first)
        "minibatch_size": 0,  # sequences per optimizer update (0: the whole rollout batch)
        "microbatch_size": 0,  # sequences per forward/backward inside an update (0: the minibatch)
        "cliprange": 0.2,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_tokens": 0,  # 0: the task's longest answer + 1
        "normalize_by_std": True,
        "advantage_eps": 1e-6,
    },
    "dpo": {"steps": 100, "batch_size": 16, "beta": 0.1, "pairs_train": 2000, "pairs_heldout": 300,
            "template": "raw"},
}


def _merge(base: dict[str, Any], data: dict[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for table, values in data.items():
        if table not in out:
            raise ValueError(f"{where}: unknown table [{table}]; known: {', '.join(out)}")
        if not isinstance(values, dict):
            raise ValueError(f"{where}: [{table}] must be a table")
        for key, value in values.items():
            if key not in out[table]:
                raise ValueError(f"{where}: unknown key {table}.{key}; known: {', '.join(out[table])}")
            default = out[table][key]
            if isinstance(default, bool) and not isinstance(value, bool):
                raise ValueError(f"{where}: {table}.{key} must be true or false, got {value!r}")
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(default) is not type(value) and default is not None:
                raise ValueError(
                    f"{where}: {table}.{key} must be {type(default).__name__}, got {type(value).__name__} {value!r}"
                )
            out[table][key] = value
    return out


def validate(cfg: dict[str, Any], where: str = "config") -> dict[str, Any]:
    run = cfg["run"]
    if run["kind"] not in KINDS:
        raise ValueError(f"{where}: run.kind must be one of {', '.join(KINDS)}, got {run['kind']!r}")
    if run["rollout_backend"] not in ("auto", "engine", "builtin"):
        raise ValueError(f"{where}: run.rollout_backend must be auto, engine or builtin")
    from lmfs.align.grpo import LOSS_TYPES

    if cfg["grpo"]["loss_type"] not in LOSS_TYPES:
        raise ValueError(f"{where}: grpo.loss_type must be one of {', '.join(LOSS_TYPES)}")
    for table, key in (("grpo", "group_size"), ("grpo", "steps"), ("grpo", "epochs"), ("sft", "batch_size"),
                       ("sft", "grad_accum"), ("dpo", "batch_size"), ("grpo", "prompts_per_step")):
        if cfg[table][key] < 1:
            raise ValueError(f"{where}: {table}.{key} must be >= 1, got {cfg[table][key]}")
    if cfg["grpo"]["group_size"] < 2 and cfg["grpo"]["loss_type"] != "no_baseline":
        raise ValueError(f"{where}: grpo.group_size must be >= 2 to normalize rewards within a group")
    if cfg["dpo"]["template"] not in ("raw", "alpaca"):
        raise ValueError(f"{where}: dpo.template must be raw or alpaca")
    return cfg


def config_from_dict(data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    return validate(_merge(DEFAULTS, data, where), where)


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a TOML config (plus ``table.key=value`` overrides, values in TOML syntax)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{p}: not valid TOML: {exc}") from None
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"override {item!r} must look like table.key=value")
        table, name = key.split(".", 1)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        data.setdefault(table, {})[name] = value
    return config_from_dict(data, str(p))
