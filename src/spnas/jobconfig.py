"""Settings every long job shares: where and how it runs, not what it computes.

Search and training configs inherit them, so each is declared, limited and explained once; most may
change on ``--resume`` (:data:`RESUME_OPTIONS`), since they decide when a run stops or checkpoints and
on what hardware, not its recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from spnas.device import AMP_MODES
from spnas.limits import Limit, at_least, check_limits, one_of, positive


@dataclass
class JobSettings:
    #: stop (with a checkpoint) after this many steps; a one-time stop, not kept for a resume
    max_steps: int | None = None
    #: torch CPU threads (None: torch's default); recorded, since results depend on it bit for bit
    threads: int | None = None
    #: refuse nondeterministic kernels, so that the same command on the same machine gives identical
    #: files and weights (torch.use_deterministic_algorithms; cuDNN autotuning off)
    deterministic: bool = False
    #: also checkpoint mid-epoch every this many minutes (epoch ends always checkpoint)
    checkpoint_minutes: float = 10.0
    #: auto (CUDA when present), cpu, cuda or cuda:N; checked when the job starts
    device: str = "auto"
    #: autocast of the forward pass: off, bf16 or fp16 (CUDA only, with loss scaling)
    amp: str = "off"
    #: images per forward pass and per BatchNorm statistic (None: the global batch over the number of
    #: processes); fixed when the run starts, so it resumes on any number of processes up to the parts
    micro_batch: int | None = None
    #: BatchNorm statistics over the whole global batch across GPUs (torch's SyncBatchNorm; CUDA only)
    sync_bn: bool = False
    #: DataLoader processes decoding image folders (None: from the CPU count; 0: in the job's process)
    workers: int | None = None

    #: the job's own limits, beside :data:`JOB_LIMITS`
    LIMITS: ClassVar[dict[str, Limit]] = {}

    def check(self, source: str = ""):
        """Refuse any value outside the limits (one line naming the option); returns ``self``."""
        check_limits(self, {**JOB_LIMITS, **self.LIMITS}, source)
        return self


JOB_LIMITS: dict[str, Limit] = {"max_steps": at_least(1), "threads": at_least(1),
                                "checkpoint_minutes": positive(), "amp": one_of(*AMP_MODES),
                                "micro_batch": at_least(1), "workers": at_least(0)}

#: options that may be given with --resume: they change when, where or how fast a run goes
RESUME_OPTIONS = ("max_steps", "threads", "checkpoint_minutes", "device", "workers")

JOB_HELPS = {
    "max_steps": "stop (with a checkpoint) after this many steps; allowed with --resume",
    "checkpoint_minutes": "also checkpoint mid-epoch every this many minutes (resume is exact from any step); "
                          "allowed with --resume",
    "device": "auto (CUDA when present), cpu, cuda or cuda:N; allowed with --resume (another device does not "
              "reproduce bit for bit)",
    "amp": "mixed precision of the forward pass: off, bf16, or fp16 (CUDA only, with loss scaling); the loss, "
           "latency term and thresholds stay float32",
    "micro_batch": "images per forward pass and per BatchNorm statistic: the global --batch-size is cut into "
                   "parts of this size whose gradients are summed (default: --batch-size / number of processes); "
                   "fixed for the run, so it resumes on any number of processes up to the number of parts (each takes a "
                   "share of them)",
    "sync_bn": "under torchrun on GPUs: BatchNorm statistics over the whole global batch (SyncBatchNorm) instead "
               "of each process's own part",
    "workers": "processes decoding an image folder ahead of the model (default: the CPU cores per process, "
               "at most 8; 0: decode in the job's own process); allowed with --resume",
    "threads": "torch CPU threads (default: torch's); a resume reuses the run's count, as results depend on it",
    "deterministic": "bit-identical reruns: refuse nondeterministic kernels (torch.use_deterministic_algorithms, "
                     "cuDNN autotuning off); the same command on the same machine then gives identical files and "
                     "weights. Every run records its versions and machine in environment.json",
}


def default_workers() -> int:
    """DataLoader processes per job process: the cores torchrun's processes on this node share, up to 8."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(8, (os.cpu_count() or 1) // max(1, per_node)))
