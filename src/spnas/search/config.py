"""Search settings. Defaults are the released code's (SPEC §4-5); every one is an option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spnas.latency.predict import FORMULAS
from spnas.jobs.jobconfig import JobSettings, setting
from spnas.jobs.limits import Limit, at_least, fraction, one_of, positive
from spnas.nn.network import INDICATOR_SCALES
from spnas.jobs.optim import OPTIMIZERS
from spnas.model.space import SPACES
from spnas.search.landing import DEFAULT_SHARE as LANDING_SHARE, RULES as LANDING_RULES


#: what every field may be; shared by options, --config files and a resumed config.json
SEARCH_LIMITS: dict[str, Limit] = {
    "space": one_of(*SPACES), "width": Limit(low=0, high=4, low_open=True), "epochs": at_least(1),
    "batch_size": at_least(1), "lr_per_256": positive(), "lr_decay": fraction(low_open=True, high_open=False),
    "lr_decay_epochs": positive(), "optimizer": one_of(*OPTIMIZERS), "warmup_fraction": fraction(high_open=False),
    "indicator_keep": fraction(low_open=True, high_open=False), "indicator_scale": one_of(*INDICATOR_SCALES),
    "label_smoothing": fraction(), "weight_decay": at_least(0), "lambda_": at_least(0),
    "target_ms": positive(), "target_margin": Limit(low=0, high=0.5, high_open=True),
    "lambda_rate": at_least(0), "lambda_gain": at_least(0), "runtime_formula": one_of(*FORMULAS),
    "val_fraction": fraction(), "train_subset": at_least(1), "seed": at_least(0), "log_every": at_least(1),
    "method": one_of("single-path", "multipath", "random"), "temperature": positive(), "candidates": at_least(1),
    "temperature_decay": fraction(low_open=True, high_open=False), "landing": fraction(high_open=False),
    "landing_rule": one_of(*LANDING_RULES), "max_params": positive(), "max_macs": positive(),
    "max_memory": positive(),
}


@dataclass
class SearchConfig(JobSettings):
    LIMITS: ClassVar[dict[str, Limit]] = SEARCH_LIMITS
    #: runs made before --landing existed searched without it, and before --landing-rule the only rule was
    #: first: resumed, they keep doing so
    LEGACY_DEFAULTS: ClassVar[dict] = {**JobSettings.LEGACY_DEFAULTS, "landing": 0.0, "landing_rule": "first"}

    space: str = setting("small", "search space preset (small, imagenet)")
    data: str = setting(
        "fashion-mnist", "dataset: fashion-mnist, mnist, cifar10, cifar100, imagefolder[:SIZE[:MODE]] (with --data-dir; MODE memory, stream or auto), "
        "synthetic:N:C:SIZE:CLASSES")
    data_dir: str | None = setting(None, "directory with the dataset files (env SPNAS_DATA_DIR)")
    lut: str | None = setting(None, "latency table from 'spnas latency profile' (must match the space)")
    out: str = setting("runs/search", "run directory to create")
    width: float | None = setting(None, "width multiplier of the space's body")
    epochs: int = setting(8, "search epochs (the paper: 8)")
    batch_size: int = setting(
        128, "images per step, the global batch: under torchrun each of N processes computes 1/N of it")
    lr_per_256: float = setting(
        0.016, "learning rate per 256 images: LR = this x --batch-size / 256 (the global batch, whatever the number of "
        "processes)")
    lr_decay: float = setting(0.97, "LR multiplier every --lr-decay-epochs")
    lr_decay_epochs: float = setting(2.4, "epochs between LR decays (staircase)")
    optimizer: str = setting("tf-rmsprop", "tf-rmsprop (the paper's), sgd or adamw")
    warmup_fraction: float = setting(5 / 8, "share of the run with lambda=0 and indicator dropout")
    indicator_keep: float = setting(0.6, "keep probability of indicator dropout during warm-up")
    indicator_scale: str = setting(
        "absolute", "absolute (the paper) or init-norm (surrogate gradient scaled by each group's initial norm: same "
        "decisions, thresholds move in short runs)")
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy")
    weight_decay: float = setting(1e-5, "L2 coefficient on non-BN parameters incl. thresholds")
    lambda_: float = setting(0.02, "runtime-loss weight, faithful mode (ignored with --target-ms)")
    target_ms: float | None = setting(
        None, "adapt lambda so the result's predicted latency lands just under this many ms")
    target_margin: float = setting(0.02, "aim this fraction under --target-ms")
    lambda_rate: float = setting(0.001, "integral rate of the lambda controller with --target-ms (per step)")
    lambda_gain: float = setting(0.1, "proportional gain of the lambda controller with --target-ms")
    landing: float = setting(
        LANDING_SHARE, "single-path with --target-ms: in this last share of the run, hard decisions inside the budget "
        "band [T(1-2 margin), T] are returned unrepaired (--landing-rule says which; a step whose flips jump over the "
        "band lands on an in-band point of its path); a run that never meets the band is repaired. 0: the last step's "
        "decisions, repaired into the band (the earlier default; BENCHMARKS.md, earlier results)")
    landing_rule: str = setting(
        "hold", "hold (search as with --landing 0 until the window's last quarter, then hold the latest in-band "
        "decisions to the end, so the search ends on its result), last (freeze nothing: return the window's last "
        "in-band decisions, which may precede the last step) or first (freeze the window's first in-band decisions; "
        "measured 0.7 points less accurate at the highest target, BENCHMARKS.md, earlier results)")
    max_params: float | None = setting(
        None, "also keep the result's parameters at or under this many (weights, biases and BatchNorm's; e.g. "
        "3e6), beside --target-ms or alone; refused if no network of the space is that small")
    max_macs: float | None = setting(None, "also keep the result's multiply-adds for one image at or under this")
    max_memory: float | None = setting(
        None, "also keep the result's peak activation memory at batch 1 at or under this many bytes (4 bytes a "
        "value in float32; the largest input + output + held residual of any op)")
    runtime_formula: str = setting("exact", "exact (all 4 LUT entries) or paper (the released approximation)")
    val_fraction: float = setting(0.1, "share of training images held out for validation")
    train_subset: int | None = setting(None, "use only this many (seeded, random) training images")
    seed: int = setting(0, "random seed (data order, init, dropout)")
    log_every: int = setting(10, "steps between metrics.jsonl records")
    eval_every_epoch: bool = setting(
        True, "validation accuracy of the supernet after each epoch (eval-mode BN; low during warm-up, whose BN "
        "statistics include indicator dropout)")
    method: str = setting(
        "single-path", "single-path (the paper's superkernel), multipath (a baseline: every op a separate branch "
        "mixed by "
        "Gumbel-softmax weights, FBNet-style; 2-2.5x the time and memory per step, BENCHMARKS.md, earlier results) or "
        "random (a baseline: --candidates random nets inside the latency band, each trained for a share of the "
        "same steps x batch, the best on validation wins)")
    candidates: int = setting(8, "random: how many architectures share the budget")
    temperature: float = setting(5.0, "multipath: Gumbel-softmax temperature after the warm-up")
    temperature_decay: float = setting(0.956, "multipath: temperature multiplier per epoch")

    @property
    def lr(self) -> float:
        return self.lr_per_256 * self.batch_size / 256
