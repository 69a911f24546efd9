"""The search loss (SPEC §4) and the target-latency controller that replaces hand-tuned lambda."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def runtime_term(latency_ms: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """lam·1000·ln(R_ms): the released code's runtime loss. With the label-smoothed cross-entropy and
    the L2 term (weight_decay · l2, which the step applies, :class:`~spnas.jobs.optim.L2Term`), the
    released objective. ``lam`` may be the controller's device tensor (float64): the factor lam·1000 is
    rounded to the latency's float32 as a Python number would be."""
    factor = lam * 1000.0
    if isinstance(factor, torch.Tensor):
        factor = factor.to(latency_ms.dtype)
    return factor * torch.log(latency_ms)


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
    swings of ±30% around the target, BENCHMARKS.md at 061b308, §3). With gain > 0 the sign turns as soon as R
    crosses the aim and the small integral only removes the steady pull of the cross-entropy.
    """

    target_ms: float
    lam: float = 0.02
    margin: float = 0.02
    rate: float = 0.001
    gain: float = 0.1
    lam_max: float = 10.0
    integral: float | None = None
    #: the lowest lambda (and integral): negative lets the latency term give capacity back below the aim;
    #: an upper-bound budget (--max-params, ...) uses 0, so it only ever pushes down
    lam_min: float = -10.0

    def __post_init__(self) -> None:
        if self.integral is None:
            self.integral = self.lam

    @property
    def aim_ms(self) -> float:
        return self.target_ms * (1 - self.margin)

    def update(self, hard_ms: float | torch.Tensor) -> float | torch.Tensor:
        """One step of the controller on the hard decisions' latency: a number, or a device tensor (then
        lambda and the integral stay on the device, float64, and nothing is read)."""
        if isinstance(hard_ms, torch.Tensor):
            error = torch.log(hard_ms.double() / self.aim_ms)
            integral = torch.as_tensor(self.integral, dtype=torch.float64, device=hard_ms.device)
            self.integral = (integral + self.rate * error).clamp(self.lam_min, self.lam_max)
            self.lam = (self.integral + self.gain * error).clamp(self.lam_min, self.lam_max)
            return self.lam
        error = math.log(hard_ms / self.aim_ms)
        self.integral = min(max(self.integral + self.rate * error, self.lam_min), self.lam_max)
        self.lam = min(max(self.integral + self.gain * error, self.lam_min), self.lam_max)
        return self.lam

    def state_dict(self) -> dict:
        return {"lam": float(self.lam), "integral": float(self.integral)}

    def load_state_dict(self, state: dict) -> None:
        self.lam = state["lam"]
        self.integral = state.get("integral", self.lam)
