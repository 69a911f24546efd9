"""Searches at several targets that share one warm-up.

During the warm-up (the first ``warmup_fraction`` of a search, 5/8 in the paper) lambda is 0 and the
target controller does not move: weights, thresholds, optimiser and data order do not depend on the
target. So a sweep runs the warm-up once, stops it at its last warm-up step with a checkpoint, and
branches every target from that checkpoint: a copy of the run directory whose config says the new
target, resumed. A branch computes what a search started at that target would have, bit for bit
(``tests/test_sweep.py``), and costs only the remaining 3/8 of a search.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from spnas.errors import SpnasError
from spnas.outputs.files import read_json, write_json
from spnas.jobs.rundir import LOCK, STALE_TMP_GLOB
from spnas.jobs.runs import CHECKPOINT, CONFIG, load_checkpoint


def warmup_steps(warmup_fraction: float, epochs: int, steps_per_epoch: int) -> int:
    """The steps of a search's warm-up (the search loop's own rule)."""
    return round(warmup_fraction * (epochs * steps_per_epoch))


def branch_search(warm_dir: Path, out: Path, target_ms: float, at_step: int, settings: dict | None = None) -> None:
    """Make ``out`` a copy of the warm-up run ``warm_dir`` (checkpointed at ``at_step``) that resumes as
    a search at ``target_ms``, with ``settings`` (search config fields the warm-up does not use, such as
    ``landing``). Written beside ``out`` and renamed, so a stop leaves no half branch."""
    step = load_checkpoint(warm_dir / CHECKPOINT)["step"]
    if step != at_step:
        raise SpnasError(f"{warm_dir}: the shared warm-up's checkpoint is at step {step}, not at the warm-up's end "
                         f"({at_step}); remove that directory and run the same command again")
    tmp = out.with_name(f".{out.name}.branch.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(warm_dir, tmp, ignore=shutil.ignore_patterns(LOCK, STALE_TMP_GLOB))
    config = read_json(tmp / CONFIG, "warm-up config")
    write_json(tmp / CONFIG, {**config, **(settings or {}), "target_ms": target_ms, "out": str(out.absolute()),
                              "max_steps": None})
    os.replace(tmp, out)
