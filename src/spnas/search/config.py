"""Search settings. Defaults are the released code's (SPEC §4-5); every one is an option."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SearchConfig:
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
    #: stop after this many steps (for tests of kill-and-resume); None = run to the end
    max_steps: int | None = None

    @property
    def lr(self) -> float:
        return self.lr_per_256 * self.batch_size / 256
