"""``spnas train ARCH``: train a derived network from scratch."""

from __future__ import annotations

import argparse
import dataclasses

from spnas.cli.arch_cmd import ARCH_HELP
from spnas.jobs.replicas import is_main_process
from spnas.cli.options import add_run_options, config_from_args, resume_overrides
from spnas.train.config import RECIPES, TrainConfig
from spnas.train.loop import run_train

def recipe_helps() -> dict[str, str]:
    """The hyper-parameters a recipe fills in show each recipe's value instead of a default."""
    helps = {f.name: f.metadata.get("help", f.name.replace("_", " ")) for f in dataclasses.fields(TrainConfig)}
    return {key: f"{helps[key]} (default: the recipe's: "
                 + ", ".join(f"{name} {values[key]}" for name, values in RECIPES.items()) + ")"
            for key in RECIPES["paper"]}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an architecture from scratch",
                       description="Writes config.json, metrics.jsonl, checkpoint.pt, model.pt and results.json "
                       "(test top-1/top-5 with and without EMA) to --out.")
    p.add_argument("arch_arg", nargs="?", metavar="ARCH", help=ARCH_HELP)
    add_run_options(p, TrainConfig, "training", recipe_helps())
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.resume:
        result = run_train(TrainConfig(), resume_dir=args.resume,
                           overrides=resume_overrides(args, TrainConfig, "arch_arg"))
    else:
        extra = {"arch": args.arch_arg} if args.arch_arg else {}
        result = run_train(config_from_args(args, TrainConfig, extra), force=args.force)
    if not is_main_process():  # under torchrun rank 0 measured the model and reports it
        return 0
    m = result.metrics
    top5 = f", top-5 {m['test_top5'] * 100:.2f}%" if m.get("test_top5") is not None else ""
    print(f"{result.arch.to_string()}\ntest top-1 {m['test_top1'] * 100:.2f}%{top5} ({m['exported']} weights; "
          f"raw {m['test_top1_raw'] * 100:.2f}%, EMA {m['test_top1_ema'] * 100:.2f}%); model in {result.run_dir}/model.pt")
    return 0
