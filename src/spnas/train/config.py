"""Training settings and recipes. A recipe is a named set of defaults; options override it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spnas.errors import SpnasError
from spnas.jobconfig import JobSettings
from spnas.limits import Limit, at_least, fraction, one_of, positive
from spnas.optim import OPTIMIZERS
from spnas.space import SPACES

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

    arch: str = ""
    space: str | None = None
    data: str = "fashion-mnist"
    data_dir: str | None = None
    width: float | None = None
    out: str = "runs/train"
    recipe: str = "quick"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str | None = None
    lr_per_256: float | None = None
    schedule: str | None = None
    warmup_epochs: float | None = None
    lr_decay: float | None = None
    lr_decay_epochs: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    ema_decay: float | None = None
    precise_bn_batches: int | None = None
    val_fraction: float = 0.1
    train_subset: int | None = None
    seed: int = 0
    log_every: int = 20

    def resolved(self) -> "TrainConfig":
        """Fill every None hyper-parameter from the recipe (the stored config is the resolved one)."""
        if self.recipe not in RECIPES:
            raise SpnasError(f"unknown recipe {self.recipe!r}; choose one of: {', '.join(RECIPES)}")
        values = {k: (v if getattr(self, k) is None else getattr(self, k)) for k, v in RECIPES[self.recipe].items()}
        return TrainConfig(**{**self.__dict__, **values})

    @property
    def lr(self) -> float:
        return self.lr_per_256 * self.batch_size / 256
