"""The step loop shared by search and training: progress, epoch ends, checkpoints, stopping.

Each job supplies ``step(step) -> postfix`` (one optimisation step) and ``epoch_end(step)``; this
module decides when to checkpoint and how to stop cleanly on Ctrl-C, SIGTERM or ``max_steps``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from spnas.errors import SpnasError
from spnas.progress import bar
from spnas.runs import StopFlag


class Interrupted(SpnasError):
    """Stopped on request with a checkpoint written; the message says how to resume."""

    exit_code = 130


def check_finite(loss: torch.Tensor, step: int, run_dir: Path, detail: str = "") -> None:
    if not torch.isfinite(loss):
        raise SpnasError(f"step {step}: loss is {loss.item()}{detail}; stopped, the last good checkpoint "
                         f"is in {run_dir} (try a lower learning rate)")


def run_steps(
    *, start: int, total: int, steps_per_epoch: int, desc: str,
    step: Callable[[int], dict], epoch_end: Callable[[int], None], save: Callable[[int], None],
    max_steps: int | None, resume_hint: str,
) -> None:
    with StopFlag() as flag, bar(total, desc, "step", initial=start) as progress:
        for i in range(start, total):
            postfix = step(i)
            progress.update()
            progress.set_postfix(postfix, refresh=False)
            last = i + 1 == total
            if (i + 1) % steps_per_epoch == 0 or last:
                epoch_end(i)
                save(i + 1)
            if flag.stop or (max_steps is not None and i + 1 >= max_steps and not last):
                save(i + 1)
                raise Interrupted(f"stopped at step {i + 1}/{total}; checkpoint saved, continue with: {resume_hint}")
