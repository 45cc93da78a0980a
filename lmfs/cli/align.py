"""``lmfs align sft|ei|dpo|grpo CONFIG`` (heavy imports inside the handlers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lmfs.cli import CLIError


def register(groups: dict[str, Any]) -> None:
    p = groups["root"].add_parser("align", help="alignment trainers: SFT, expert iteration, DPO, GRPO")
    sub = p.add_subparsers(dest="align_command", metavar="WHAT")
    p.set_defaults(func=lambda args: p.print_help() or 2)
    helps = {"sft": "supervised fine-tuning on prompt/response data (response-masked NLL)",
             "ei": "expert iteration: sample, keep verified-correct responses, SFT on them",
             "dpo": "direct preference optimization against a frozen reference",
             "grpo": "GRPO: group-normalized rewards, no-baseline / REINFORCE-baseline / GRPO-Clip losses"}
    for kind, text in helps.items():
        s = sub.add_parser(kind, help=text)
        s.add_argument("config", help="TOML config (see lmfs/align/configs/)")
        s.add_argument("--set", dest="overrides", action="append", default=[], metavar="TABLE.KEY=VALUE",
                       help="override a config value (TOML syntax), e.g. --set grpo.steps=10")
        s.add_argument("--no-progress", action="store_true")
        s.set_defaults(func=cmd_align, kind=kind)


def cmd_align(args: argparse.Namespace) -> int:
    from lmfs.align.config import load_config
    from lmfs.align.trainer import TRAINERS

    try:
        cfg = load_config(args.config, [f"run.kind=\"{args.kind}\"", *args.overrides])
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    try:
        summary = TRAINERS[args.kind](cfg, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc), code=1) from None
    brief = {k: v for k, v in summary.items() if k not in ("evals", "preference_evals", "rounds", "task")}
    print(json.dumps(brief, indent=1, default=str))
    return 0
