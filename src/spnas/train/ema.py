"""The weight EMA of a training run, as a handful of foreach ops per step.

``torch.optim.swa_utils.AveragedModel`` with a per-tensor ``avg_fn`` (what training used before) walks
every parameter and buffer in Python, detaching each twice and applying the average op by op (about
5,000 ATen ops a step for the small space's k5e6 net, most of a training step's launches on a GPU), and
reads its update count from the device twice a step. :class:`WeightEMA` computes the same average with
foreach ops over all floating tensors at once and keeps a host-side copy of the count. Its state dict has
AveragedModel's keys (``n_averaged``, ``module.*``), so checkpoints written with either resume with the
other.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA(nn.Module):
    """TF's ExponentialMovingAverage(decay, num_updates) of a network's parameters and floating buffers:
    decay_t = min(decay, (1 + t) / (10 + t)), averaged + (current - averaged)·(1 - decay_t), after a first
    update that copies. Without the warm-up a 0.9999 (or 0.998) average is still mostly the random init
    after a short run. Integer buffers (BatchNorm's batch count) follow the model."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model)
        self.decay = decay
        device = next(model.parameters()).device
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long, device=device))
        #: the number of updates so far, on the host (n_averaged is the device's; both advance together)
        self.updates = 0

    @staticmethod
    def _pairs(averaged: nn.Module, model: nn.Module) -> tuple[list, list, list, list]:
        mine = [*averaged.parameters(), *averaged.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        floats = [(a, m) for a, m in zip(mine, theirs) if a.is_floating_point()]  # used under no_grad only
        ints = [(a, m) for a, m in zip(mine, theirs) if not a.is_floating_point()]
        return [a for a, _ in floats], [m for _, m in floats], [a for a, _ in ints], [m for _, m in ints]

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        averaged, current, averaged_ints, current_ints = self._pairs(self.module, model)
        if self.updates == 0:
            torch._foreach_copy_(averaged, current)
        else:
            n = self.n_averaged
            d = torch.clamp((1 + n) / (10 + n), max=self.decay)
            difference = torch._foreach_sub(current, averaged)
            torch._foreach_mul_(difference, 1 - d)
            torch._foreach_add_(averaged, difference)
        if averaged_ints:
            torch._foreach_copy_(averaged_ints, current_ints)
        self.n_averaged.add_(1)
        self.updates += 1

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        result = super().load_state_dict(state_dict, strict, assign)
        self.updates = int(self.n_averaged)
        return result
