"""``lmfs train --config FILE [--set key=value ...]``: run (or resume) a training run."""

from __future__ import annotations

import argparse

from lmfs.cli import CLIError

# flags that are shorthands for --set key=value
_SHORTHANDS = ("out_dir", "max_steps", "device", "seed", "train_data", "val_data")


def register(groups: dict[str, argparse._SubParsersAction]) -> None:
    p = groups["root"].add_parser(
        "train",
        help="train a Transformer LM from a config file (resumes from the newest checkpoint in out_dir)",
        description="Train a Transformer LM. Keys of the config file can be overridden with --set key=value "
        "(repeatable) or the shorthand flags below: model.KEY for the model's (the [model] table; a bare model "
        "key works too, except eps: model.eps is RMSNorm's, optim.eps AdamW's), KEY for the run's. Running again "
        "on the same out_dir resumes.",
    )
    p.add_argument("--config", help="TOML or JSON run config (e.g. lmfs/train/configs/gutenberg_small.toml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set lr=3e-4 --set model.d_model=128",
    )
    for key in _SHORTHANDS:
        p.add_argument("--" + key.replace("_", "-"), dest=key, default=None, help=f"same as --set {key}=...")
    p.add_argument(
        "--no-resume", action="store_true", help="start from scratch even if out_dir has checkpoints"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config (model nested) and exit"
    )
    p.set_defaults(func=_run)

    e = groups["root"].add_parser(
        "evaluate",
        help="loss of a trained run on a whole token file; optionally samples and a commit-worthy export",
        description="Evaluate the newest checkpoint of a run on every window of a token file (default: the run's "
        "val_data). With --export DIR also write metrics.jsonl, summary.json and samples.txt there.",
    )
    e.add_argument("--checkpoint", required=True, help="run folder or checkpoint file")
    e.add_argument("--data", default=None, help="token file (.npy/.bin); default: the run's val_data")
    e.add_argument(
        "--export", default=None, metavar="DIR", help="write summary.json, metrics.jsonl, samples.txt here"
    )
    e.add_argument(
        "--prompt", action="append", default=[], help="prompt to sample for samples.txt (repeatable)"
    )
    e.add_argument("--max-new-tokens", type=int, default=120)
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    e.set_defaults(func=_evaluate)


def _run(args: argparse.Namespace) -> int:
    import json

    from lmfs.train.checkpoint import CheckpointError
    from lmfs.train.config import ConfigError, load_config
    from lmfs.train.loop import NonFiniteLossError, train
    from lmfs.train.runlock import RunLockedError

    overrides = list(args.overrides)
    overrides += [f"{k}={getattr(args, k)}" for k in _SHORTHANDS if getattr(args, k) is not None]
    if args.no_resume:
        overrides.append("resume=false")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    try:
        result = train(cfg, progress=not args.no_progress)
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    except RunLockedError as exc:
        raise CLIError(str(exc), code=1) from None
    except NonFiniteLossError as exc:
        raise CLIError(str(exc), code=1) from None
    print(json.dumps(result.to_dict(), indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json
    import sys
    import tempfile
    from pathlib import Path

    import torch

    from lmfs.train.checkpoint import CheckpointError
    from lmfs.train.export import export_run

    if args.threads:
        torch.set_num_threads(args.threads)
    dest = args.export or tempfile.mkdtemp(prefix="lmfs-eval-")
    try:
        summary = export_run(
            args.checkpoint,
            dest,
            val_data=args.data,
            prompts=args.prompt or None,
            max_new_tokens=args.max_new_tokens,
            device=args.device,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    summary.pop("config", None)
    print(json.dumps(summary, indent=2))
    samples = Path(dest) / "samples.txt"
    if samples.is_file():
        # on stderr, like the paths below: stdout stays one JSON document a script can parse
        print("\nsamples (prompt, then the model's continuation):", file=sys.stderr)
        print(samples.read_text(encoding="utf-8"), file=sys.stderr)
    where = f"exported to {dest}" if args.export else f"files in {dest} (pass --export DIR to keep them)"
    print(where, file=sys.stderr)
    return 0
