"""``spnas sweep``: searched nets at several latency targets against the uniform nets, over seeds."""

from __future__ import annotations

import argparse
import sys

from spnas.cli.run_cmd import add_pipeline_arguments, pipeline_options, resumable
from spnas.jobs.engine import Interrupted
from spnas.errors import SpnasError
from spnas.workflows.sweep import AXES, DEFAULT_METHOD, MAX_POINTS, METHOD_NAMES, UNIFORM_OPS, SweepOptions, run_sweep


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="search at several latency targets; searched nets against the uniform nets' front",
        description="Profile a latency table (cached), run one search warm-up and branch it to every target "
        f"(the warm-up does not depend on the target), train every searched net and the uniform nets "
        f"({', '.join(UNIFORM_OPS)}) once per seed with the same recipe, measure them all in one interleaved "
        "run, and write report.md, sweep.png, sweep.json and sweep.csv: accuracy (mean ± std over seeds) "
        "against latency, the uniform nets' front, and which searched nets lie above it. Re-running the "
        "same command resumes.")
    add_pipeline_arguments(p, "runs/spnas-sweep")
    p.add_argument("--budget", choices=AXES, default="latency",
                   help="what to sweep: the latency target (default), or one budget, params, macs or memory, "
                   "each search keeping --max-params (...) at one of --targets and searching at one latency "
                   "target (--target-ms, default the slowest uniform net's); the front and verdicts are then on "
                   "that budget's axis")
    p.add_argument("--target-ms", type=float, help="with --budget params, macs or memory: the latency target of "
                   "every search (default: the slowest uniform net's predicted latency)")
    p.add_argument("--targets", help="comma-separated targets: latency in ms, e.g. 0.35,0.4,0.45,0.5, or values of "
                   "--budget, e.g. 150000,250000 parameters (default: --points values spread between the "
                   "cheapest and dearest uniform nets)")
    p.add_argument("--points", type=int, default=4,
                   help=f"how many targets to spread when --targets is not given (1-{MAX_POINTS}; default 4)")
    p.add_argument("--seeds", default="0,1", help="comma-separated training seeds; every net is trained once "
                   "per seed (default 0,1)")
    p.add_argument("--methods", default=DEFAULT_METHOD, help="comma-separated search methods among "
                   f"{', '.join(METHOD_NAMES)}; several compare them at equal targets with bootstrap intervals "
                   f"(default {DEFAULT_METHOD})")
    p.add_argument("--search-seeds", default="0", help="comma-separated search seeds: every method searches at every "
                   "target once per seed (default 0)")
    p.set_defaults(func=sweep)


def _numbers(text: str | None, kind: type, option: str) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.split(","))
    except ValueError:
        raise SpnasError(f"{option} must be comma-separated {kind.__name__}s, got {text!r}") from None


def sweep(args: argparse.Namespace) -> int:
    options = SweepOptions(pipeline_options(args), _numbers(args.targets, float, "--targets"), args.points,
                           _numbers(args.seeds, int, "--seeds"), tuple(args.methods.split(",")),
                           _numbers(args.search_seeds, int, "--search-seeds"), args.budget)
    try:
        summary = run_sweep(options)
    except Interrupted as stop:
        raise resumable(stop, args.out) from None
    for warning in summary["warnings"]:
        print(f"spnas: warning: {warning}", file=sys.stderr)
    for c in summary["method_comparisons"]:
        print(f"  at {c['target_ms']:.3f} ms: {c['a']} - {c['b']} = {c['top1_diff_points']:+.2f} points "
              f"(95% CI {c['top1_diff_ci_points'][0]:+.2f} to {c['top1_diff_ci_points'][1]:+.2f})")
    for v in summary["verdicts"]:
        where = f"{v['latency_ms']:.3f} ms" if args.budget == "latency" else f"{v['x']:,.0f} {args.budget}"
        print(f"  {v['model']:20s} top-1 {v['test_top1_mean'] * 100:6.2f}% at {where}; uniform "
              f"front {v['front_top1'] * 100:6.2f}% ({v['margin_points']:+.2f} points)")
    above = sum(v["above_front"] for v in summary["verdicts"])
    print(f"{above} of {len(summary['verdicts'])} searched nets above the uniform front; report: {args.out}/report.md")
    return 0
