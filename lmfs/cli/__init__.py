"""The ``lmfs`` command: tools that sit above the library.

One module per unit (``lmfs/cli/<unit>.py``) adds its subcommands in ``register(groups)``, where
``groups["root"]`` are the top-level subparsers and ``groups["bench"]`` those of ``lmfs bench``; each parser
it adds gets a ``func``. The units never import this package. Modules here import the library inside their
handlers, so ``lmfs --help`` does not load torch.

A handler reports a mistake the user can fix by raising :class:`CLIError`; :func:`main` prints it as
``lmfs <command>: error: <message>`` (argparse's own format) and exits with its code (2 by default).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

UNIT_CLIS = (
    "lmfs.cli.harness",
    "lmfs.cli.tokenizer",
    "lmfs.cli.nn",
    "lmfs.cli.train",
    "lmfs.cli.generate",
    "lmfs.cli.serve",
    "lmfs.cli.scaling",
    "lmfs.cli.profile",
    "lmfs.cli.eval",
    "lmfs.cli.align",
    "lmfs.cli.data",
)


class CLIError(Exception):
    """A bad input or setting, said in words the user can act on; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmfs", description="language models from scratch: library + harness")
    root = parser.add_subparsers(dest="command", metavar="COMMAND")
    bench = root.add_parser("bench", help="benchmarks: run suites into the store, time the model")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="WHAT")
    bench.set_defaults(func=lambda args: bench.print_help() or 2)
    groups = {"root": root, "bench": bench_sub}
    for name in UNIT_CLIS:
        importlib.import_module(name).register(groups)
    return parser


def _command_name(argv: list[str], args: argparse.Namespace) -> str:
    """``lmfs train``, ``lmfs tokenizer encode``, ...: the words of the command that ran."""
    words = [args.command] if getattr(args, "command", None) else []
    for key, value in vars(args).items():
        if key.endswith("_command") and isinstance(value, str) and value in argv:
            words.append(value)
    return " ".join(["lmfs", *words])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        rc = func(args)
    except CLIError as exc:
        print(f"{_command_name(argv, args)}: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lmfs ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)
