"""Entry point: parse, dispatch, and turn user errors into one line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from typing import NoReturn

from spnas import __version__
from spnas.cli import arch_cmd, export_cmd, latency_cmd, run_cmd, search_cmd, space_cmd, sweep_cmd, train_cmd
from spnas.jobs.engine import Interrupted
from spnas.errors import RankLocalError, SpnasError
from spnas.jobs.replicas import RANK_ENV, is_main_process

COMMANDS = (run_cmd, sweep_cmd, search_cmd, train_cmd, export_cmd, latency_cmd, space_cmd, arch_cmd)


class OneLineParser(argparse.ArgumentParser):
    """argparse with its usage errors as one ``spnas: error:`` line (usage is one ``--help`` away), and
    no abbreviated options: ``--epoch 3`` must not silently mean ``--epochs 3``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"spnas: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    main_process = is_main_process()
    try:
        with contextlib.redirect_stdout(io.StringIO()) if not main_process else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except Interrupted as stop:  # planned: a note, not an error
        if main_process:
            print(f"spnas: {stop}", file=sys.stderr)
        return stop.exit_code
    except SpnasError as err:
        # under torchrun every rank meets the same refusal or divergence: rank 0 says it once
        if main_process:
            print(f"spnas: error: {err}", file=sys.stderr)
        elif isinstance(err, RankLocalError):
            print(f"spnas: error: [rank {os.environ.get(RANK_ENV)}] {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # permissions, a full disk, a name too long, ...: name the file, not a traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"spnas: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spnas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
