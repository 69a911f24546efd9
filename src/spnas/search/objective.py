"""The search loss (SPEC §4) and the target-latency controller that replaces hand-tuned lambda."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from spnas.jobs.optim import l2_penalty


@dataclass
class Regularisers:
    total: torch.Tensor
    l2: torch.Tensor
    runtime: torch.Tensor


def regularisers(model: nn.Module, latency_ms: torch.Tensor, lam: float, weight_decay: float) -> Regularisers:
    """weight_decay·l2 + lam·1000·ln(R_ms): with the label-smoothed cross-entropy, the released code's
    objective (the step adds the cross-entropy of each part of the batch)."""
    l2 = l2_penalty(model)
    runtime = lam * 1000.0 * torch.log(latency_ms)
    return Regularisers(weight_decay * l2 + runtime, l2, runtime)


@dataclass
class TargetController:
    """A PI controller on lambda for the equality constraint R = T_aim, T_aim = T·(1 - margin).

    The error is e = ln(R_hard / T_aim), on the hard decisions' latency, so the controller sees
    exactly what the search will return. lambda = integral + gain·e, integral += rate·e per step.
    Above the aim lambda grows until the thresholds move (their gradients start tiny, SPEC §2); below
    it lambda may turn negative, so the runtime term gives capacity back instead of waiting for the
    weak cross-entropy pull to undo an overshoot. The proportional part matters because TF-RMSProp
    moves the thresholds at nearly the same speed whatever lambda's size: what counts is lambda's
    sign, and a pure integral keeps its sign long after the latency has crossed the aim (measured:
    swings of ±30% around the target, BENCHMARKS.md §3). With gain > 0 the sign turns as soon as R
    crosses the aim and the small integral only removes the steady pull of the cross-entropy.
    """

    target_ms: float
    lam: float = 0.02
    margin: float = 0.02
    rate: float = 0.001
    gain: float = 0.1
    lam_max: float = 10.0
    integral: float | None = None

    def __post_init__(self) -> None:
        if self.integral is None:
            self.integral = self.lam

    @property
    def aim_ms(self) -> float:
        return self.target_ms * (1 - self.margin)

    def update(self, hard_ms: float) -> float:
        error = math.log(hard_ms / self.aim_ms)
        self.integral = min(max(self.integral + self.rate * error, -self.lam_max), self.lam_max)
        self.lam = min(max(self.integral + self.gain * error, -self.lam_max), self.lam_max)
        return self.lam

    def state_dict(self) -> dict:
        return {"lam": self.lam, "integral": self.integral}

    def load_state_dict(self, state: dict) -> None:
        self.lam = state["lam"]
        self.integral = state.get("integral", self.lam)
