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
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spnas.jobs.device import Precision
from spnas.jobs.divergence import DivergenceGuard
from spnas.errors import SpnasError
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
    """Means over the whole global batch, the same on every rank."""

    ce: float
    loss: float
    batch_acc: float
    grad_norm: float


@dataclass
class GlobalBatchStep:
    """One optimisation step of a global batch cut into ``num_parts`` parts (one forward pass each).

    ``model`` is what forward passes go through (DDP around ``net`` on several ranks). A rank with
    several parts sums their gradients, under DDP's ``no_sync`` until its last one. A part's loss is
    (cross-entropy + ``regulariser()``) × world / parts, so the gradient is the mean over all parts
    of the global batch either way. The regulariser (L2, the runtime term) is called
    after each part's forward pass, as the runtime term uses the indicators of that pass (with its
    own dropout draw, as each of the paper's TPU cores had).
    """

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    precision: Precision
    replicas: Replicas
    num_parts: int
    label_smoothing: float

    def __call__(self, step: int, batch: PartBatch, *, step_seed: int, guard: DivergenceGuard,
                 regulariser: Callable[[], torch.Tensor] | None = None,
                 check_loss: Callable[[torch.Tensor, torch.Tensor], None] | None = None) -> StepStats:
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
        (check_loss or (lambda c, t: guard.check_loss(step, c, t)))(ce_mean, loss_mean)
        grad_norm = self.precision.step(self.optimizer, self.net, guard, step)
        return StepStats(ce_mean.item(), loss_mean.item(), acc.item(), grad_norm)

    def _accumulating(self, local_only: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` for a part whose gradients only add to this rank's (the last one reduces)."""
        ddp = isinstance(self.model, nn.parallel.DistributedDataParallel)
        return self.model.no_sync() if local_only and ddp else contextlib.nullcontext()


def run_steps(
    *, start: int, total: int, steps_per_epoch: int, desc: str,
    step: Callable[[int], dict], epoch_end: Callable[[int], None], save: Callable[[int], None],
    max_steps: int | None, resume_hint: str, checkpoint_s: float | None = None,
    replicas: Replicas = Replicas(),
) -> None:
    """The step loop. On several ranks every rank calls it; ``save`` and ``epoch_end`` decide themselves
    what only rank 0 does, and a stop signal seen by any rank stops all of them at the same step."""
    last_save = time.monotonic()
    with StopFlag() as flag, bar(total, desc, "step", initial=start, disable=not replicas.main) as progress:
        for i in range(start, total):
            postfix = step(i)
            progress.update()
            progress.set_postfix(postfix, refresh=False)
            last = i + 1 == total
            epoch_done = (i + 1) % steps_per_epoch == 0 or last
            if epoch_done:
                epoch_end(i)
            # any rank's clock or signal counts, so that all ranks save and stop at the same step
            due, stop = replicas.any(checkpoint_s is not None and time.monotonic() - last_save >= checkpoint_s,
                                     flag.stop)
            saved = epoch_done or due
            if saved:
                save(i + 1)
                last_save = time.monotonic()
            if stop or (max_steps is not None and i + 1 >= max_steps and not last):
                if not saved:
                    save(i + 1)
                signum = flag.signum or signal.SIGTERM
                why = f"on {signal.Signals(signum).name}" if stop else "as asked (--max-steps)"
                raise Interrupted(f"stopped {why} at step {i + 1}/{total}; checkpoint saved, continue with: "
                                  f"{resume_hint}", 128 + signum if stop else 0)
