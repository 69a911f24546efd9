"""TensorFlow-style RMSProp and the released step-wise LR schedule.

torch.optim.RMSprop differs from tf.train.RMSPropOptimizer on two counts that matter here: TF puts
epsilon inside the square root and starts the mean-square accumulator at 1, not 0. With the
superkernel's tiny threshold gradients, those two decide how fast thresholds move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from spnas.errors import SpnasError


class TFRMSprop(Optimizer):
    r"""ms = decay·ms + (1-decay)·g²;  mom = momentum·mom + lr·g / sqrt(ms + eps);  p -= mom.

    The update runs as seven ``torch._foreach_*`` ops over all parameters of a device and dtype (a few
    multi-tensor kernels on a GPU) instead of five ops per parameter; each foreach op applies the same
    per-element arithmetic as the per-parameter form, so the two agree bit for bit on the CPU
    (``tests/test_optim.py``). State stays per parameter, as before, so checkpoints are unchanged.
    """

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
            params, grads, ms, mom = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.full_like(p, group["initial_accumulator"])
                    state["mom"] = torch.zeros_like(p)
                params.append(p)
                grads.append(p.grad)
                ms.append(state["ms"])
                mom.append(state["mom"])
            grouped = Optimizer._group_tensors_by_device_and_dtype([params, grads, ms, mom])  # type: ignore[list-item]
            for (p, g, m, v), _ in grouped.values():
                _tf_rmsprop_update(p, g, m, v, group["lr"], group["decay"], group["momentum"], group["eps"])
        return loss


def _tf_rmsprop_update(params: list, grads: list, ms: list, mom: list, lr: float, decay: float, momentum: float,
                       eps: float) -> None:
    torch._foreach_mul_(ms, decay)
    torch._foreach_addcmul_(ms, grads, grads, value=1 - decay)
    denominator = torch._foreach_add(ms, eps)
    torch._foreach_sqrt_(denominator)
    torch._foreach_mul_(mom, momentum)
    torch._foreach_addcdiv_(mom, grads, denominator, value=lr)
    torch._foreach_sub_(params, mom)


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


def l2_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter that is not BatchNorm's, thresholds included: what TF's l2_loss term covers."""
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters(recurse=False)}
    return [p for p in model.parameters() if id(p) not in bn_params]


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """sum 0.5·||v||² over every parameter that is not BatchNorm, thresholds included (TF l2_loss)."""
    return sum(0.5 * p.pow(2).sum() for p in l2_parameters(model))


@dataclass
class L2Term:
    """The paper's loss term ``weight_decay · l2_penalty(model)``, applied as its gradient.

    Its gradient is ``weight_decay · v`` for every parameter v it covers, whatever the rest of the loss:
    so instead of four ops per parameter forward and as many backward through autograd, the step adds
    it to the gradients in one foreach op after the backward pass (and after the gradients are
    averaged over replicas, so every replica adds the same). Its value (:meth:`penalty`), for the
    reported loss, is another four ops. The sum of the loss's gradient and this one is the same as before, up to the
    order of float additions.
    """

    params: list[nn.Parameter]
    weight_decay: float

    @classmethod
    def of(cls, model: nn.Module, weight_decay: float) -> "L2Term":
        return cls(l2_parameters(model), weight_decay)

    @torch.no_grad()
    def penalty(self) -> torch.Tensor:
        """sum 0.5·||v||² (what :func:`l2_penalty` computes; the loss term is ``weight_decay`` times it), on
        the parameters' device."""
        return torch.stack(torch._foreach_norm(self.params)).square().sum() * 0.5

    @torch.no_grad()
    def add_gradient(self) -> None:
        """grad += weight_decay · v; a parameter without a gradient (none reached it) gets that alone."""
        have = [p for p in self.params if p.grad is not None]
        if have:
            torch._foreach_add_([p.grad for p in have], have, alpha=self.weight_decay)
        missing = [p for p in self.params if p.grad is None]
        if missing:
            for p, g in zip(missing, torch._foreach_mul(missing, self.weight_decay)):
                p.grad = g


OPTIMIZERS = ("tf-rmsprop", "sgd", "adamw")


def make_optimizer(name: str, params: Iterable, lr: float, weight_decay: float = 0.0) -> Optimizer:
    """``tf-rmsprop`` (the paper's), ``sgd`` (Nesterov 0.9) or ``adamw``."""
    if name == "tf-rmsprop":
        return TFRMSprop(params, lr)
    # foreach: the multi-tensor updates torch uses on GPUs by default, asked for on every device so that
    # the CPU runs (and counts, bench/launches.py) the same ops
    if name == "sgd":
        return torch.optim.SGD(params, lr, momentum=0.9, nesterov=True, weight_decay=weight_decay, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr, weight_decay=weight_decay, foreach=True)
    raise SpnasError(f"unknown optimizer {name!r}; choose tf-rmsprop, sgd or adamw")
