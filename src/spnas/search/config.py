"""Search settings. Defaults are the released code's (SPEC §4-5); every one is an option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spnas.latency.predict import FORMULAS
from spnas.jobconfig import JobSettings
from spnas.limits import Limit, at_least, fraction, one_of, positive
from spnas.nn.network import INDICATOR_SCALES
from spnas.optim import OPTIMIZERS
from spnas.space import SPACES


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
    "temperature_decay": fraction(low_open=True, high_open=False),
}


@dataclass
class SearchConfig(JobSettings):
    LIMITS: ClassVar[dict[str, Limit]] = SEARCH_LIMITS

    space: str = "small"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    lut: str | None = None
    out: str = "runs/search"
    width: float | None = None
    epochs: int = 8
    batch_size: int = 128
    #: LR per 256 images (0.064 at batch 1024); scaled linearly with the batch size
    lr_per_256: float = 0.016
    lr_decay: float = 0.97
    lr_decay_epochs: float = 2.4
    optimizer: str = "tf-rmsprop"
    #: share of the run with lambda = 0 and indicator dropout on (5 of 8 epochs)
    warmup_fraction: float = 5 / 8
    indicator_keep: float = 0.6
    #: absolute (the paper) or init-norm (beyond the paper: thresholds respond within a short run)
    indicator_scale: str = "absolute"
    label_smoothing: float = 0.1
    weight_decay: float = 1e-5
    #: faithful mode: fixed trade-off lambda (0.02 in the paper); ignored when target_ms is set
    lambda_: float = 0.02
    #: beyond the paper: adapt lambda so the final predicted latency lands at or just under this
    target_ms: float | None = None
    #: how far under target_ms to aim (the result must land in [target*(1-2*margin), target])
    target_margin: float = 0.02
    #: per-step rate of the additive lambda update in target mode (lambda += rate * ln(R / aim))
    lambda_rate: float = 0.001
    #: proportional gain of the lambda controller (lambda = integral + gain * ln(R / aim))
    lambda_gain: float = 0.1
    runtime_formula: str = "exact"
    val_fraction: float = 0.1
    train_subset: int | None = None
    seed: int = 0
    log_every: int = 10
    eval_every_epoch: bool = True
    #: single-path (the paper), multipath (an FBNet-style baseline: every op a branch) or random
    #: (random search at the same budget in steps x batch)
    method: str = "single-path"
    #: random only: architectures drawn, each trained for 1/candidates of the budget
    candidates: int = 8
    #: multipath only: Gumbel-softmax temperature after warm-up, and its decay per epoch (FBNet's)
    temperature: float = 5.0
    temperature_decay: float = 0.956

    @property
    def lr(self) -> float:
        return self.lr_per_256 * self.batch_size / 256
