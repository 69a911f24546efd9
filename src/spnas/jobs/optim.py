"""TensorFlow-style RMSProp and the released step-wise LR schedule.

torch.optim.RMSprop differs from tf.train.RMSPropOptimizer on two counts that matter here: TF puts
epsilon inside the square root and starts the mean-square accumulator at 1, not 0. With the
superkernel's tiny threshold gradients, those two decide how fast thresholds move.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from spnas.errors import SpnasError


class TFRMSprop(Optimizer):
    r"""ms = decay·ms + (1-decay)·g²;  mom = momentum·mom + lr·g / sqrt(ms + eps);  p -= mom."""

    def __init__(self, params: Iterable, lr: float, decay: float = 0.9, momentum: float = 0.9,
                 eps: float = 1e-3, initial_accumulator: float = 1.0) -> None:
        if lr <= 0 or not 0 <= decay < 1 or not 0 <= momentum < 1 or eps < 0:
            raise ValueError("invalid TFRMSprop hyper-parameters")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps,
                                      initial_accumulator=initial_accumulator))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.full_like(p, group["initial_accumulator"])
                    state["mom"] = torch.zeros_like(p)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(group["decay"]).addcmul_(p.grad, p.grad, value=1 - group["decay"])
                mom.mul_(group["momentum"]).addcdiv_(p.grad, (ms + group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(mom)
        return loss


def staircase_schedule(optimizer: Optimizer, steps_per_epoch: int, decay: float = 0.97,
                       decay_epochs: float = 2.4, warmup_epochs: float = 0.0) -> LambdaLR:
    """LR × decay every ``decay_epochs`` (staircase, per step), after an optional linear warm-up."""
    decay_steps = max(1, int(decay_epochs * steps_per_epoch))
    warmup_steps = int(warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return decay ** math.floor(step / decay_steps)

    return LambdaLR(optimizer, factor)


def cosine_schedule(optimizer, steps_per_epoch: int, total_steps: int, warmup_epochs: float) -> LambdaLR:
    """Linear warm-up, then cosine decay to 0 at the last step: the short-run recipe (``--recipe quick``),
    where the paper's staircase would barely decay in a few epochs."""
    warmup = int(warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return LambdaLR(optimizer, factor)


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """sum 0.5·||v||² over every parameter that is not BatchNorm, thresholds included (TF l2_loss)."""
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters(recurse=False)}
    return sum(0.5 * p.pow(2).sum() for p in model.parameters() if id(p) not in bn_params)


OPTIMIZERS = ("tf-rmsprop", "sgd", "adamw")


def make_optimizer(name: str, params: Iterable, lr: float, weight_decay: float = 0.0) -> Optimizer:
    """``tf-rmsprop`` (the paper's), ``sgd`` (Nesterov 0.9) or ``adamw``."""
    if name == "tf-rmsprop":
        return TFRMSprop(params, lr)
    if name == "sgd":
        return torch.optim.SGD(params, lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr, weight_decay=weight_decay)
    raise SpnasError(f"unknown optimizer {name!r}; choose tf-rmsprop, sgd or adamw")
