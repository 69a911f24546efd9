"""``spnas search``: the latency-aware single-path search."""

from __future__ import annotations

import argparse
import sys
import textwrap

from spnas.cli.options import add_run_options, config_from_args, resume_overrides
from spnas.search.config import SearchConfig
from spnas.search.loop import run_search

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search an architecture under a latency budget",
        description="Train the supernet once; the thresholds pick each layer's op. Writes config.json, "
        "metrics.jsonl, checkpoint.pt, arch.json, summary.json (with a diagnosis of the decisions and "
        "warnings when the search looks degenerate), progress.png and decisions.png to --out.")
    add_run_options(p, SearchConfig, "search")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        result = run_search(SearchConfig(), resume_dir=args.resume, overrides=resume_overrides(args, SearchConfig))
    else:
        result = run_search(config_from_args(args, SearchConfig), force=args.force)
    print(f"{result.arch.to_string()}\npredicted {result.predicted_ms:.3f} ms; "
          f"search took {result.wall_s / 60:.1f} min; results in {result.run_dir}")
    if result.diagnosis is not None:
        print(textwrap.fill(result.diagnosis.paragraph(), 100))
        for warning in result.diagnosis.warnings:
            print(f"spnas: warning: {warning}", file=sys.stderr)
    return 0
