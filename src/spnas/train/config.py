"""Training settings and recipes. A recipe is a named set of defaults; options override it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spnas.errors import SpnasError
from spnas.jobs.jobconfig import JobSettings, setting
from spnas.jobs.limits import Limit, at_least, fraction, one_of, positive
from spnas.jobs.optim import OPTIMIZERS
from spnas.model.space import SPACES

RECIPES: dict[str, dict] = {
    # SPEC §6: the released final-training recipe (meant for 350 ImageNet epochs)
    "paper": dict(optimizer="tf-rmsprop", lr_per_256=0.016, schedule="staircase", warmup_epochs=5.0,
                  lr_decay=0.97, lr_decay_epochs=2.4, weight_decay=1e-5, label_smoothing=0.1,
                  ema_decay=0.9999, precise_bn_batches=0),
    # a few epochs on small images: SGD + cosine, EMA short enough to matter within the run, and
    # BatchNorm statistics re-estimated for the final weights (see evaluate.reestimate_batchnorm)
    "quick": dict(optimizer="sgd", lr_per_256=0.2, schedule="cosine", warmup_epochs=0.3,
                  lr_decay=0.97, lr_decay_epochs=2.4, weight_decay=5e-5, label_smoothing=0.1,
                  ema_decay=0.998, precise_bn_batches=50),
}


#: what every field may be (None = unset, filled from the recipe); shared by options, --config and resume
TRAIN_LIMITS: dict[str, Limit] = {
    "space": one_of(*SPACES), "width": Limit(low=0, high=4, low_open=True), "recipe": one_of(*RECIPES),
    "epochs": at_least(1), "batch_size": at_least(1), "optimizer": one_of(*OPTIMIZERS),
    "lr_per_256": positive(), "schedule": one_of("staircase", "cosine"), "warmup_epochs": at_least(0),
    "lr_decay": fraction(low_open=True, high_open=False), "lr_decay_epochs": positive(),
    "weight_decay": at_least(0), "label_smoothing": fraction(), "ema_decay": fraction(),
    "precise_bn_batches": at_least(0), "val_fraction": fraction(), "train_subset": at_least(1),
    "seed": at_least(0), "log_every": at_least(1),
}


@dataclass
class TrainConfig(JobSettings):
    LIMITS: ClassVar[dict[str, Limit]] = TRAIN_LIMITS

    arch: str = setting("", "the architecture, as an option (or give it as ARCH)")
    space: str | None = setting(None, "space the architecture belongs to (default: the one it names)")
    data: str = setting("fashion-mnist", "dataset (see 'spnas search --help')")
    data_dir: str | None = setting(None, "directory with the dataset files (env SPNAS_DATA_DIR)")
    width: float | None = setting(None, "width multiplier of the space's body")
    out: str = setting("runs/train", "run directory to create")
    recipe: str = setting("quick", "named defaults: paper (the paper's ImageNet training recipe), quick (short "
                          "runs: BatchNorm statistics re-estimated)")
    epochs: int = setting(10, "training epochs")
    batch_size: int = setting(
        128, "images per step, the global batch: under torchrun each of N processes computes 1/N of it")
    optimizer: str | None = setting(None, "tf-rmsprop, sgd or adamw")
    lr_per_256: float | None = setting(
        None, "learning rate per 256 images (LR = this x --batch-size / 256, the global batch)")
    schedule: str | None = setting(None, "staircase (x lr-decay every lr-decay-epochs) or cosine")
    warmup_epochs: float | None = setting(None, "linear LR warm-up epochs")
    lr_decay: float | None = setting(None, "staircase: multiply the LR by this")
    lr_decay_epochs: float | None = setting(None, "staircase: every this many epochs")
    weight_decay: float | None = setting(None, "L2 on conv/linear weights")
    label_smoothing: float | None = setting(None, "label smoothing")
    ema_decay: float | None = setting(None, "weight EMA decay (evaluated; the better on validation is exported)")
    precise_bn_batches: int | None = setting(
        None, "re-estimate BatchNorm statistics on this many training batches before every evaluation and for the saved"
        " model (0 = keep the running averages)")
    val_fraction: float = setting(0.1, "share of the training images held out for validation")
    train_subset: int | None = setting(None, "use only this many (seeded, random) training images")
    seed: int = setting(0, "random seed (init, data order, augmentation)")
    log_every: int = setting(20, "write a metrics.jsonl line every this many steps")

    def resolved(self) -> "TrainConfig":
        """Fill every None hyper-parameter from the recipe (the stored config is the resolved one)."""
        if self.recipe not in RECIPES:
            raise SpnasError(f"unknown recipe {self.recipe!r}; choose one of: {', '.join(RECIPES)}")
        values = {k: (v if getattr(self, k) is None else getattr(self, k)) for k, v in RECIPES[self.recipe].items()}
        return TrainConfig(**{**self.__dict__, **values})

    @property
    def lr(self) -> float:
        return self.lr_per_256 * self.batch_size / 256
