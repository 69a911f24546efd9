"""Entry point: parse, dispatch, and turn user errors into one line and exit code 2."""

from __future__ import annotations

import argparse
import sys

from spnas import __version__
from spnas.cli import arch_cmd, export_cmd, latency_cmd, run_cmd, search_cmd, space_cmd, train_cmd
from spnas.errors import SpnasError

COMMANDS = (run_cmd, search_cmd, train_cmd, export_cmd, latency_cmd, space_cmd, arch_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spnas",
        description="Single-Path NAS: find the most accurate ConvNet under a latency budget "
        "in one training run. Start with 'spnas run' (the whole pipeline on Fashion-MNIST).",
    )
    parser.add_argument("--version", action="version", version=f"spnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SpnasError as err:
        print(f"spnas: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("spnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
