"""Stop a diverging job at once, say why, and never leave a non-finite checkpoint or model on disk.

What counts as divergence: a non-finite loss term, gradient, weight or BatchNorm statistic, or a
cross-entropy more than :data:`GROWTH` times that of a uniform guess (ln K for K classes), i.e. two
orders of magnitude above where every run starts. The message names the step, the likely cause
(the learning rate, lambda, or the latency table) and what is on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from spnas.errors import SpnasError

#: cross-entropy above GROWTH * ln(K) is divergence (a uniform guess scores ln K)
GROWTH = 100.0


class Diverged(SpnasError):
    """The job diverged; nothing non-finite was written."""

    exit_code = 3


def first_non_finite(state: Any, prefix: str = "") -> str | None:
    """The name of the first floating tensor or number (in nested dicts/lists) that is nan or inf."""
    if isinstance(state, torch.Tensor):
        if state.is_floating_point() and not bool(torch.isfinite(state).all()):
            return prefix or "tensor"
        return None
    if isinstance(state, float):
        return None if math.isfinite(state) else (prefix or "value")
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found:
            return found
    return None


def gradient_norm(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """The L2 norm of all gradients together (nan/inf if any gradient is)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: one fused reduction
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


@dataclass
class DivergenceGuard:
    """Per-job checks; ``lr_hint`` names the LR option and value, ``last_checkpoint`` the step of the
    newest finite checkpoint on disk (None before the first)."""

    run_dir: Path
    total: int
    num_classes: int
    lr_hint: str
    last_checkpoint: int | None = None

    @property
    def lr_cause(self) -> str:
        return f"the learning rate ({self.lr_hint}); try one 10x lower"

    def fail(self, step: int, what: str, cause: str) -> Diverged:
        if self.last_checkpoint:
            disk = (f"the last checkpoint ({self.run_dir}/checkpoint.pt, step {self.last_checkpoint}) is finite, "
                    "but resuming repeats the same settings: start a new run with the cause fixed "
                    "(another --out, or --force to replace this one)")
        else:
            disk = (f"no checkpoint was written in {self.run_dir}: start a new run with the cause fixed "
                    "(another --out, or --force to replace this one)")
        return Diverged(f"step {step + 1}/{self.total}: diverged, {what}; likely cause: {cause}; {disk}")

    def check_loss(self, step: int, ce: torch.Tensor, total: torch.Tensor, *,
                   latency_ms: torch.Tensor | None = None, runtime: torch.Tensor | None = None,
                   lam: float | None = None) -> None:
        """Raise on a non-finite loss or an exploding cross-entropy, blaming the first broken input."""
        ce_value = ce.item()
        if latency_ms is not None and not (math.isfinite(latency_ms.item()) and latency_ms.item() > 0):
            raise self.fail(step, f"the latency table predicts {latency_ms.item():.4g} ms",
                            "the latency table's entries or calibration (check it with 'spnas latency predict')")
        if runtime is not None and not math.isfinite(runtime.item()):
            raise self.fail(step, f"the latency term is {runtime.item():.4g}", f"lambda ({lam:.4g})")
        if not math.isfinite(ce_value):
            raise self.fail(step, f"cross-entropy is {ce_value}", self.lr_cause)
        if ce_value > GROWTH * math.log(max(self.num_classes, 2)):
            raise self.fail(step, f"cross-entropy grew to {ce_value:.4g} (a uniform guess scores "
                            f"{math.log(max(self.num_classes, 2)):.2f})", self.lr_cause)
        if not math.isfinite(total.item()):
            raise self.fail(step, f"loss is {total.item()}", self.lr_cause)

    def check_gradients(self, step: int, model: torch.nn.Module) -> float:
        """The gradient norm (for the log); raises if any gradient is nan or inf."""
        norm = gradient_norm(model.parameters()).item()
        if not math.isfinite(norm):
            bad = next((n for n, p in model.named_parameters()
                        if p.grad is not None and not bool(torch.isfinite(p.grad).all())), "?")
            raise self.fail(step, f"the gradient of {bad} is not finite", self.lr_cause)
        return norm

    def check_state(self, step: int, parts: dict[str, Any]) -> None:
        """Before anything is written: every weight, BN statistic and optimiser buffer finite."""
        for name, obj in parts.items():
            if obj is None:
                continue
            bad = first_non_finite(obj.state_dict() if hasattr(obj, "state_dict") else obj, name)
            if bad:
                raise self.fail(step - 1, f"{bad} is not finite (nothing was written)", self.lr_cause)

    def saved(self, step: int) -> None:
        self.last_checkpoint = step
