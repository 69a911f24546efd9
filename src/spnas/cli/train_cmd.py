"""``spnas train ARCH``: train a derived network from scratch."""

from __future__ import annotations

import argparse

from spnas.cli.arch_cmd import ARCH_HELP
from spnas.jobconfig import JOB_HELPS
from spnas.replicas import is_main_process
from spnas.cli.options import add_run_options, config_from_args, resume_overrides
from spnas.train.config import RECIPES, TrainConfig
from spnas.train.loop import run_train

HELPS = {
    **JOB_HELPS,
    "arch": "the architecture, as an option (or give it as ARCH)",
    "space": "space the architecture belongs to (default: the one it names)",
    "data": "dataset (see 'spnas search --help')",
    "data_dir": "directory with the dataset files (env SPNAS_DATA_DIR)",
    "width": "width multiplier of the space's body",
    "out": "run directory to create",
    "recipe": f"named defaults: {', '.join(RECIPES)} (paper = SPEC §6)",
    "epochs": "training epochs",
    "batch_size": "images per step, the global batch: under torchrun each of N processes computes 1/N of it",
    "optimizer": "tf-rmsprop, sgd or adamw",
    "lr_per_256": "learning rate per 256 images (LR = this x --batch-size / 256, the global batch)",
    "schedule": "staircase (x lr-decay every lr-decay-epochs) or cosine",
    "lr_decay": "staircase: multiply the LR by this",
    "lr_decay_epochs": "staircase: every this many epochs",
    "warmup_epochs": "linear LR warm-up epochs",
    "weight_decay": "L2 on conv/linear weights",
    "label_smoothing": "label smoothing",
    "ema_decay": "weight EMA decay (evaluated; the better on validation is exported)",
    "precise_bn_batches": "re-estimate BatchNorm statistics on this many training batches before every "
                          "evaluation and for the saved model (0 = keep the running averages)",
    "train_subset": "use only this many (seeded, random) training images",
    "val_fraction": "share of the training images held out for validation",
    "seed": "random seed (init, data order, augmentation)",
    "log_every": "write a metrics.jsonl line every this many steps",
}
# the hyper-parameters a recipe fills in show each recipe's value instead of a default
for _key in RECIPES["paper"]:
    HELPS[_key] = HELPS.get(_key, _key.replace("_", " ")) + " (default: the recipe's: " + ", ".join(
        f"{name} {values[_key]}" for name, values in RECIPES.items()) + ")"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an architecture from scratch",
                       description="Writes config.json, metrics.jsonl, checkpoint.pt, model.pt and results.json "
                       "(test top-1/top-5 with and without EMA) to --out.")
    p.add_argument("arch_arg", nargs="?", metavar="ARCH", help=ARCH_HELP)
    add_run_options(p, TrainConfig, HELPS, "training")
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
