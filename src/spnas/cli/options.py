"""Command-line options generated from a config dataclass, so the CLI and config files share keys."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from spnas.errors import SpnasError
from spnas.jobs.jobconfig import JobSettings
from spnas.jobs.limits import option_name
from spnas.jobs.runs import build_config, load_config_file


def add_config_options(parser: argparse.ArgumentParser, cls: type, helps: dict[str, str] | None = None) -> None:
    """One option per field (default None = 'not given', so config files and defaults show through), with
    the help written beside the field (``jobconfig.setting``); ``helps`` overrides some."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group("settings (also accepted as keys of --config FILE)")
    shared = {f.name for f in dataclasses.fields(JobSettings)}
    for f in sorted(dataclasses.fields(cls), key=lambda f: f.name in shared):  # the job's own settings first
        kind = hints[f.name]
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        default = f.default if f.default is not dataclasses.MISSING else None
        text = (helps or {}).get(f.name) or f.metadata.get("help", "")
        if "(default" not in text and default not in (None, ""):  # a help that explains its default wins
            text = f"{text} (default: {default:.4g})" if isinstance(default, float) else f"{text} (default: {default})"
        if base is bool:
            group.add_argument(option_name(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        else:
            group.add_argument(option_name(f.name), dest=f.name, type=base, default=None, help=text,
                               metavar=f.name.rstrip("_").upper())


def given_values(args: argparse.Namespace, cls: type) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def add_run_options(parser: argparse.ArgumentParser, cls: type, job: str, helps: dict[str, str] | None = None) -> None:
    """--config / --resume / --force plus one option per config field: what every long job takes."""
    parser.add_argument("--config", help="YAML/JSON file with the settings below (options override it)")
    parser.add_argument("--resume", metavar="RUN_DIR", help=f"continue an interrupted {job} exactly")
    parser.add_argument("--force", action="store_true",
                        help="empty a non-empty --out that spnas created, and start over")
    add_config_options(parser, cls, helps)


def config_from_args(args: argparse.Namespace, cls: type, extra: dict | None = None):
    """Defaults <- --config file <- options given on the command line (<- ``extra``)."""
    file_values = load_config_file(args.config) if args.config else {}
    return build_config(cls, file_values, {**given_values(args, cls), **(extra or {})}, args.config or "config")


def resume_overrides(args: argparse.Namespace, cls: type, positional: str | None = None) -> dict:
    """The options given with ``--resume`` (``run_*`` refuses those that would change the run)."""
    for flag, given in (("--config", args.config), ("--force", args.force),
                        ("ARCH", getattr(args, positional, None) if positional else None)):
        if given:
            raise SpnasError(f"{flag} cannot be given with --resume: the run keeps the settings in its config.json")
    return given_values(args, cls)
