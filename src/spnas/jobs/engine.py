"""What search and training share: one optimisation step over a global batch, and the step loop.

:class:`GlobalBatchStep` runs this rank's parts of a global batch (see :mod:`spnas.jobs.replicas`),
accumulates their gradients, checks the loss and the gradients, and steps the optimiser, on any device
and any number of ranks. :func:`run_steps` drives the steps: progress, epoch ends, checkpoints (every
epoch end, and every ``checkpoint_s`` seconds in between, so a long epoch on a machine that may
vanish is never lost whole) and clean stops on Ctrl-C, SIGTERM or ``max_steps``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spnas.jobs.device import Precision
from spnas.jobs.divergence import GradientNorms
from spnas.errors import SpnasError
from spnas.jobs.optim import L2Term
from spnas.jobs.progress import bar
from spnas.jobs.replicas import Replicas, part_seed
from spnas.jobs.runs import StopFlag

#: ``batch(part) -> (images, labels)``: one part of the current step's global batch
PartBatch = Callable[[int], "tuple[torch.Tensor, torch.Tensor]"]


class Interrupted(SpnasError):
    """A planned stop (Ctrl-C, SIGTERM, ``--max-steps``) with a checkpoint written. The CLI prints it
    as a note, not an error; the exit code is 128 + the signal, or 0 for ``--max-steps``."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class StepStats:
    """Means over the whole global batch, the same on every rank, as tensors on the device. Reading
    them (:meth:`read`) makes the host wait for the device, so the loops read them only where they
    write a log line, and the divergence guard checks them in batches (:meth:`DivergenceGuard.verify`)."""

    ce: torch.Tensor
    loss: torch.Tensor
    batch_acc: torch.Tensor
    grad: GradientNorms
    #: the L2 penalty sum 0.5·||v||² (its weighted term is in ``loss``), where the step adds that term
    l2: torch.Tensor | None = None
    #: fp16 only: steps the loss scaler skipped in a row, and its scale
    skipped: torch.Tensor | None = None
    scale: torch.Tensor | None = None

    def read(self, **extra: torch.Tensor | float) -> dict[str, float]:
        """ce, loss, batch_acc, grad_norm (and l2 where the step has it) as numbers, with the ``extra``
        tensors (or numbers) named by their keywords, in one transfer."""
        named = {"ce": self.ce, "loss": self.loss, "batch_acc": self.batch_acc, "grad_norm": self.grad.total,
                 **({"l2": self.l2} if self.l2 is not None else {}), **extra}
        tensors = {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}
        values = torch.stack([v.detach().reshape(()).double() for v in tensors.values()]).tolist()
        return {**{k: float(v) for k, v in named.items() if k not in tensors}, **dict(zip(tensors, values))}


@dataclass
class GlobalBatchStep:
    """One optimisation step of a global batch cut into ``num_parts`` parts (one forward pass each).

    ``model`` is what forward passes go through (DDP around ``net`` on several ranks). A rank with
    several parts sums their gradients, under DDP's ``no_sync`` until its last one. A part's loss is
    (cross-entropy + ``regulariser()``) × world / parts, so the gradient is the mean over all parts
    of the global batch either way. The regulariser (the runtime term) is called after each part's
    forward pass, as it uses the indicators of that pass (with its own dropout draw, as each of the
    paper's TPU cores had). The L2 term (``l2``, when the optimiser does not decay the weights itself)
    is the same for every part: its gradient is added once, after the backward passes, and its value
    to the reported loss.

    Nothing in a step reads the device: the statistics come back as tensors (:class:`StepStats`).
    """

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    replicas: Replicas
    num_parts: int
    label_smoothing: float
    l2: L2Term | None = None

    def __call__(self, step: int, batch: PartBatch, *, step_seed: int,
                 regulariser: Callable[[], torch.Tensor] | None = None) -> StepStats:
        self.optimizer.zero_grad(set_to_none=True)
        mine = self.replicas.parts(self.num_parts)
        scale = self.replicas.world / self.num_parts  # 1 for one process with one part: the plain loss
        sums = torch.zeros(3, device=self.precision.device)  # cross-entropy, loss, batch accuracy
        for part in mine:
            torch.manual_seed(part_seed(step_seed, part))  # indicator dropout: one draw per part
            x, y = self.precision.batch(*batch(part))
            with self._accumulating(part != mine[-1]):
                with self.precision.autocast():
                    logits = self.model(x)
                logits = logits.float()  # the loss, latency term and thresholds stay float32
                ce = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
                loss = ce + regulariser() if regulariser is not None else ce
                self.precision.backward(loss * scale if scale != 1 else loss)
            sums += torch.stack([ce.detach(), loss.detach(), (logits.detach().argmax(1) == y).float().mean()])
        ce_mean, loss_mean, acc = (self.replicas.sum(sums) / self.num_parts).unbind()
        penalty = None
        if self.l2 is not None:  # before the step: the weights this step's loss saw
            penalty = self.l2.penalty()
            loss_mean = loss_mean + self.l2.weight_decay * penalty
        grad = self.precision.step(self.optimizer, self.net, self.l2.add_gradient if self.l2 is not None else None)
        return StepStats(ce_mean, loss_mean, acc, grad, l2=penalty, **self.precision.health())

    def _accumulating(self, local_only: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` for a part whose gradients only add to this rank's (the last one reduces)."""
        inner = getattr(self.model, "_orig_mod", self.model)  # under torch.compile: the module it compiled
        ddp = isinstance(inner, nn.parallel.DistributedDataParallel)
        return inner.no_sync() if local_only and ddp else contextlib.nullcontext()


def run_steps(
    *, start: int, total: int, steps_per_epoch: int, desc: str,
    step: Callable[[int], dict | None], epoch_end: Callable[[int], str | None], save: Callable[[int], None],
    max_steps: int | None, resume_hint: str, checkpoint_s: float | None = None,
    replicas: Replicas = Replicas(), images_per_step: int = 1,
) -> None:
    """The step loop. On several ranks every rank calls it; ``save`` and ``epoch_end`` decide themselves
    what only rank 0 does, and a stop signal seen by any rank stops all of them at the same step.

    ``step(i)`` returns what the progress bar shows beside its rate (a dict, at logged steps; None
    elsewhere, so nothing is read from the device for it). The bar counts images (``images_per_step``
    a step), so its rate is images/s of training steps: the time of epoch ends (evaluation, BatchNorm
    re-estimation) and checkpoints is taken out of it and reported on a line of its own, with what
    ``epoch_end`` returns (e.g. the validation accuracy).
    """
    last_save = time.monotonic()
    with StopFlag() as flag, bar(total * images_per_step, desc, "img", initial=start * images_per_step,
                                 disable=not replicas.main, unit_scale=True) as progress:
        for i in range(start, total):
            postfix = step(i)
            progress.update(images_per_step)
            if postfix is not None:
                progress.set_postfix({"step": f"{i + 1}/{total}", **postfix}, refresh=False)
            paused = time.monotonic()
            last = i + 1 == total
            epoch_done = (i + 1) % steps_per_epoch == 0 or last
            if epoch_done:
                summary = epoch_end(i)
                if summary and replicas.main:
                    progress.write(f"{desc}: epoch {(i + 1 + steps_per_epoch - 1) // steps_per_epoch} at step {i + 1}: "
                                   f"{summary} ({time.monotonic() - paused:.1f} s, not counted in the rate)",
                                   file=sys.stderr)
            # any rank's clock or signal counts, so that all ranks save and stop at the same step
            due, stop = replicas.any(checkpoint_s is not None and time.monotonic() - last_save >= checkpoint_s,
                                     flag.stop)
            saved = epoch_done or due
            if saved:
                save(i + 1)
                last_save = time.monotonic()
            _exclude(progress, time.monotonic() - paused)
            if stop or (max_steps is not None and i + 1 >= max_steps and not last):
                if not saved:
                    save(i + 1)
                signum = flag.signum or signal.SIGTERM
                why = f"on {signal.Signals(signum).name}" if stop else "as asked (--max-steps)"
                raise Interrupted(f"stopped {why} at step {i + 1}/{total}; checkpoint saved, continue with: "
                                  f"{resume_hint}", 128 + signum if stop else 0)


def _exclude(progress, seconds: float) -> None:
    """Leave ``seconds`` (an epoch end, a checkpoint) out of the bar's rate and ETA."""
    if not progress.disable and seconds > 0:
        progress.start_t += seconds
        progress.last_print_t += seconds
