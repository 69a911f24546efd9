"""Stop a diverging job at once, say why, and never leave a non-finite checkpoint or model on disk.

What counts as divergence: a non-finite loss term, gradient, weight or BatchNorm statistic, or a
cross-entropy more than :data:`GROWTH` times that of a uniform guess (ln K for K classes), i.e. two
orders of magnitude above where every run starts. The message names the step, the likely cause
(the learning rate, lambda, or the latency table) and what is on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch

from spnas.errors import SpnasError

#: cross-entropy above GROWTH * ln(K) is divergence (a uniform guess scores ln K)
GROWTH = 100.0
#: an fp16 run whose scaler skips this many steps in a row is diverging, not just finding its scale
MAX_SKIPPED_STEPS = 20


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


@dataclass
class GradientNorms:
    """The L2 norm of all gradients together (nan/inf if any gradient is), and each one's, on the device."""

    total: torch.Tensor
    #: (parameters with a gradient,) each gradient's norm, and those parameters in the same order
    each: torch.Tensor | None = None
    params: list = field(default_factory=list)


def gradient_norms(params: Iterable[torch.nn.Parameter]) -> GradientNorms:
    """Every gradient's norm in one foreach op, and their total (torch's ``get_total_norm`` does the same)."""
    have = [p for p in params if p.grad is not None]
    if not have:
        return GradientNorms(torch.zeros(()))
    each = torch.stack(torch._foreach_norm([p.grad for p in have]))
    return GradientNorms(torch.linalg.vector_norm(each), each, have)


def gradient_norm(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """The L2 norm of all gradients together (nan/inf if any gradient is)."""
    return gradient_norms(params).total


@dataclass
class _Record:
    step: int
    stats: Any
    latency_ms: Any = None
    runtime: Any = None
    lam: Any = None


@dataclass
class DivergenceGuard:
    """Per-job checks; ``lr_hint`` names the LR option and value, ``last_checkpoint`` the step of the
    newest finite checkpoint on disk (None before the first), ``model`` the network whose parameters a
    non-finite gradient is named after.

    The checks of a step are *recorded* on the device (:meth:`record`: nothing is read, so the host never
    waits for the GPU) and *verified* together, in one transfer, where the loop reads the device anyway:
    at logged steps, epoch ends and before every checkpoint (:meth:`verify`). A step that diverged is
    reported by its own number, with the same message as if it had been checked at once; the steps run
    in between compute on non-finite values and are thrown away, since nothing is written before the
    check.
    """

    run_dir: Path
    total: int
    num_classes: int
    lr_hint: str
    last_checkpoint: int | None = None
    model: torch.nn.Module | None = None
    _pending: list[_Record] = field(default_factory=list, repr=False)

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

    def record(self, step: int, stats: Any, *, latency_ms: Any = None, runtime: Any = None, lam: Any = None) -> None:
        """Keep a step's figures (a :class:`~spnas.jobs.engine.StepStats`, and for a search its latency
        term's parts) for the next :meth:`verify`; reads nothing."""
        self._pending.append(_Record(step, stats, latency_ms, runtime, lam))

    def verify(self) -> None:
        """Check every step recorded since the last call, in order, reading them in one transfer; raise
        at the first that diverged."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        fields = [(r.stats.ce, r.stats.loss, r.stats.grad.total, r.latency_ms, r.runtime, r.lam, r.stats.skipped)
                  for r in pending]
        tensors = [v for row in fields for v in row if isinstance(v, torch.Tensor)]
        read = iter(torch.stack([t.detach().reshape(()).double() for t in tensors]).tolist())
        for r, row in zip(pending, fields):
            ce, loss, norm, latency, runtime, lam, skipped = (next(read) if isinstance(v, torch.Tensor) else v
                                                              for v in row)
            self.check_loss(r.step, ce, loss, latency_ms=latency, runtime=runtime, lam=lam)
            if skipped is None:
                self._check_gradients(r.step, norm, r.stats.grad)
            elif skipped >= MAX_SKIPPED_STEPS:
                raise self.fail(r.step, f"fp16 gradients overflowed {MAX_SKIPPED_STEPS} steps in a row "
                                f"(loss scale {float(r.stats.scale):.3g})", self.lr_cause)

    def check_loss(self, step: int, ce: Any, total: Any, *, latency_ms: Any = None, runtime: Any = None,
                   lam: Any = None) -> None:
        """Raise on a non-finite loss or an exploding cross-entropy, blaming the first broken input (numbers
        or 0-dim tensors)."""
        ce_value, total = float(ce), float(total)
        if latency_ms is not None and not (math.isfinite(float(latency_ms)) and float(latency_ms) > 0):
            raise self.fail(step, f"the latency table predicts {float(latency_ms):.4g} ms",
                            "the latency table's entries or calibration (check it with 'spnas latency predict')")
        if runtime is not None and not math.isfinite(float(runtime)):
            raise self.fail(step, f"the latency term is {float(runtime):.4g}", f"lambda ({float(lam):.4g})")
        if not math.isfinite(ce_value):
            raise self.fail(step, f"cross-entropy is {ce_value}", self.lr_cause)
        if ce_value > GROWTH * math.log(max(self.num_classes, 2)):
            raise self.fail(step, f"cross-entropy grew to {ce_value:.4g} (a uniform guess scores "
                            f"{math.log(max(self.num_classes, 2)):.2f})", self.lr_cause)
        if not math.isfinite(total):
            raise self.fail(step, f"loss is {total}", self.lr_cause)

    def _check_gradients(self, step: int, norm: float, grads: GradientNorms) -> None:
        if math.isfinite(norm):
            return
        names = {id(p): n for n, p in self.model.named_parameters()} if self.model is not None else {}
        finite = torch.isfinite(grads.each).tolist() if grads.each is not None else []
        bad = next((names.get(id(p), "?") for p, ok in zip(grads.params, finite) if not ok), "?")
        raise self.fail(step, f"the gradient of {bad} is not finite", self.lr_cause)

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
