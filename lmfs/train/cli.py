"""``lmfs train --config FILE [--set key=value ...]``: run (or resume) a training run."""

from __future__ import annotations

import argparse

# flags that are shorthands for --set key=value
_SHORTHANDS = ("out_dir", "max_steps", "device", "seed", "train_data", "val_data")


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["root"].add_parser(
        "train",
        help="train a Transformer LM from a config file (resumes from the newest checkpoint in out_dir)",
        description="Train a Transformer LM. Keys of the config file can be overridden with --set key=value "
        "(repeatable) or the shorthand flags below. Running again on the same out_dir resumes.",
    )
    p.add_argument("--config", help="TOML or JSON run config (e.g. lmfs/train/configs/gutenberg_small.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set lr=3e-4 --set batch_size=16")
    for key in _SHORTHANDS:
        p.add_argument("--" + key.replace("_", "-"), dest=key, default=None, help=f"same as --set {key}=...")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if out_dir has checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import json
    import sys

    from lmfs.train.checkpoint import CheckpointError
    from lmfs.train.config import ConfigError, load_config
    from lmfs.train.loop import NonFiniteLossError, train

    overrides = list(args.overrides)
    overrides += [f"{k}={getattr(args, k)}" for k in _SHORTHANDS if getattr(args, k) is not None]
    if args.no_resume:
        overrides.append("resume=false")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"lmfs train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    try:
        result = train(cfg, progress=not args.no_progress)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"lmfs train: {exc}", file=sys.stderr)
        return 2
    except NonFiniteLossError as exc:
        print(f"lmfs train: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), indent=2))
    return 0
