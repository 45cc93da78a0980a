"""The ``lmfs`` command. Each unit registers its subcommands from its own ``cli`` module.

A unit's ``register(groups)`` receives ``groups["root"]`` (the top-level subparsers) and ``groups["bench"]``
(the subparsers of ``lmfs bench``) and sets ``func`` on each parser it adds. Unit ``cli`` modules import
heavy libraries (torch, pandas) inside their handlers, so ``lmfs --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

UNIT_CLIS = [
    "lmfs.harness.cli",
    "lmfs.tokenizer.cli",
    "lmfs.nn.cli",
    "lmfs.train.cli",
    "lmfs.generate.cli",
    "lmfs.scaling.cli",
    "lmfs.profile.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmfs", description="language models from scratch: library + harness")
    root = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = root.add_parser("bench", help="benchmarks: run suites into the store, time the model")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="WHAT")
    bench.set_defaults(func=lambda args: bench.print_help() or 2)
    groups = {"root": root, "bench": bench_sub}
    for name in UNIT_CLIS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that unit has no CLI (yet)
                continue
            raise
        module.register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        rc = func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lmfs ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
