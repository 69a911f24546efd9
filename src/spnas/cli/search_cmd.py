"""``spnas search``: the latency-aware single-path search."""

from __future__ import annotations

import argparse
import sys
import textwrap

from spnas.jobconfig import JOB_HELPS
from spnas.cli.options import add_run_options, config_from_args, resume_overrides
from spnas.data.datasets import DATASETS
from spnas.search.config import SearchConfig
from spnas.search.loop import run_search

HELPS = {
    **JOB_HELPS,
    "space": "search space preset (small, imagenet)",
    "data": f"dataset: {', '.join(DATASETS)} (synthetic:N:C:SIZE:CLASSES)",
    "data_dir": "directory with the dataset files (env SPNAS_DATA_DIR)",
    "lut": "latency table from 'spnas latency profile' (must match the space)",
    "out": "run directory to create",
    "width": "width multiplier of the space's body",
    "epochs": "search epochs (the paper: 8)",
    "batch_size": "images per step, the global batch: under torchrun each of N processes computes 1/N of it",
    "lr_per_256": "learning rate per 256 images: LR = this x --batch-size / 256 (the global batch, whatever the "
                  "number of processes)",
    "lr_decay": "LR multiplier every --lr-decay-epochs",
    "lr_decay_epochs": "epochs between LR decays (staircase)",
    "optimizer": "tf-rmsprop (the paper's), sgd or adamw",
    "warmup_fraction": "share of the run with lambda=0 and indicator dropout",
    "indicator_keep": "keep probability of indicator dropout during warm-up",
    "indicator_scale": "absolute (the paper) or init-norm (surrogate gradient scaled by each group's "
    "initial norm: same decisions, thresholds move in short runs)",
    "label_smoothing": "label smoothing of the cross-entropy",
    "weight_decay": "L2 coefficient on non-BN parameters incl. thresholds",
    "lambda_": "runtime-loss weight, faithful mode (ignored with --target-ms)",
    "target_ms": "adapt lambda so the result's predicted latency lands just under this many ms",
    "target_margin": "aim this fraction under --target-ms",
    "lambda_rate": "integral rate of the lambda controller with --target-ms (per step)",
    "lambda_gain": "proportional gain of the lambda controller with --target-ms",
    "runtime_formula": "exact (all 4 LUT entries) or paper (the released approximation)",
    "val_fraction": "share of training images held out for validation",
    "train_subset": "use only this many (seeded, random) training images",
    "seed": "random seed (data order, init, dropout)",
    "log_every": "steps between metrics.jsonl records",
    "method": "single-path (the paper's superkernel), multipath (a baseline: every op a separate branch mixed "
              "by Gumbel-softmax weights, FBNet-style; 2-2.5x the time and memory per step, BENCHMARKS.md section 8) "
              "or random (a baseline: --candidates random nets inside the latency band, each trained for a share "
              "of the same steps x batch, the best on validation wins)",
    "candidates": "random: how many architectures share the budget",
    "temperature": "multipath: Gumbel-softmax temperature after the warm-up",
    "temperature_decay": "multipath: temperature multiplier per epoch",
    "eval_every_epoch": "validation accuracy of the supernet after each epoch (eval-mode BN; low during warm-up, whose BN statistics include indicator dropout)",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search an architecture under a latency budget",
        description="Train the supernet once; the thresholds pick each layer's op. Writes config.json, "
        "metrics.jsonl, checkpoint.pt, arch.json, summary.json (with a diagnosis of the decisions and "
        "warnings when the search looks degenerate), progress.png and decisions.png to --out.")
    add_run_options(p, SearchConfig, HELPS, "search")
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
