"""``lmfs bench model`` and ``lmfs profile`` without the rest of the CLI (on a bare GPU image other units' CLIs
may need packages that are not there). Usage: ``python -m benchmarks.gpu.profile_cli profile --size small ...``."""

from __future__ import annotations

import argparse
import sys

from lmfs.cli import profile as cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lmfs-profile-subset")
    root = parser.add_subparsers(dest="command")
    bench = root.add_parser("bench").add_subparsers(dest="bench_command")
    cli.register({"root": root, "bench": bench})
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
