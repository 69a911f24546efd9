"""The step loop shared by search and training: progress, epoch ends, checkpoints, stopping.

Each job supplies ``step(step) -> postfix`` (one optimisation step) and ``epoch_end(step)``; this
module decides when to checkpoint (every epoch end, and every ``checkpoint_s`` seconds in between,
so a long epoch on a machine that may vanish is never lost whole) and how to stop cleanly on Ctrl-C,
SIGTERM or ``max_steps``.
"""

from __future__ import annotations

import signal
import time
from typing import Callable

from spnas.errors import SpnasError
from spnas.progress import bar
from spnas.runs import StopFlag


class Interrupted(SpnasError):
    """A planned stop (Ctrl-C, SIGTERM, ``--max-steps``) with a checkpoint written. The CLI prints it
    as a note, not an error; the exit code is 128 + the signal, or 0 for ``--max-steps``."""

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_steps(
    *, start: int, total: int, steps_per_epoch: int, desc: str,
    step: Callable[[int], dict], epoch_end: Callable[[int], None], save: Callable[[int], None],
    max_steps: int | None, resume_hint: str, checkpoint_s: float | None = None,
) -> None:
    last_save = time.monotonic()
    with StopFlag() as flag, bar(total, desc, "step", initial=start) as progress:
        for i in range(start, total):
            postfix = step(i)
            progress.update()
            progress.set_postfix(postfix, refresh=False)
            last = i + 1 == total
            epoch_done = (i + 1) % steps_per_epoch == 0 or last
            if epoch_done:
                epoch_end(i)
            saved = epoch_done or (checkpoint_s is not None and time.monotonic() - last_save >= checkpoint_s)
            if saved:
                save(i + 1)
                last_save = time.monotonic()
            if flag.stop or (max_steps is not None and i + 1 >= max_steps and not last):
                if not saved:
                    save(i + 1)
                why = f"on {signal.Signals(flag.signum).name}" if flag.stop else "as asked (--max-steps)"
                raise Interrupted(f"stopped {why} at step {i + 1}/{total}; checkpoint saved, continue with: "
                                  f"{resume_hint}", 128 + flag.signum if flag.stop else 0)
