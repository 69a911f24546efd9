"""Settings every long job shares: where and how it runs, not what it computes.

Search and training configs inherit them, so each is declared, limited and explained once; most may
change on ``--resume`` (:data:`RESUME_OPTIONS`), since they decide when a run stops or checkpoints and
on what hardware, not its recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from spnas.data.device_decode import DECODE_MODES
from spnas.jobs.device import AMP_MODES
from spnas.jobs.limits import Limit, at_least, check_limits, one_of, positive


def setting(default: Any, help: str) -> Any:
    """A config field with its command-line help beside it: the one place that help is written."""
    return field(default=default, metadata={"help": help})


@dataclass
class JobSettings:
    max_steps: int | None = setting(None, "stop (with a checkpoint) after this many steps; allowed with --resume")
    threads: int | None = setting(
        None, "torch CPU threads (default: torch's); a resume reuses the run's count, as results depend on it")
    deterministic: bool = setting(
        False, "bit-identical reruns: refuse nondeterministic kernels (torch.use_deterministic_algorithms, cuDNN "
        "autotuning off); the same command on the same machine then gives identical files and weights. Every run "
        "records its versions and machine in environment.json")
    checkpoint_minutes: float = setting(
        10.0, "also checkpoint mid-epoch every this many minutes (resume is exact from any step); "
        "allowed with --resume")
    device: str = setting(
        "auto", "auto (CUDA when present), cpu, cuda or cuda:N; allowed with --resume (another device does not "
        "reproduce "
        "bit for bit)")
    amp: str = setting(
        "off", "mixed precision of the forward pass: off, bf16, or fp16 (CUDA only, with loss scaling); the loss, "
        "latency term and thresholds stay float32")
    micro_batch: int | None = setting(
        None, "images per forward pass and per BatchNorm statistic: the global --batch-size is cut into parts of this "
        "size whose gradients are summed (default: --batch-size / number of processes); fixed for the run, so it "
        "resumes on any number of processes up to the number of parts (each takes a share of them)")
    sync_bn: bool = setting(
        False, "under torchrun on GPUs: BatchNorm statistics over the whole global batch (SyncBatchNorm) instead "
        "of each"
        " process's own part")
    compile: bool = setting(
        False, "torch.compile the network for the training steps (fused kernels: fewer launches on a GPU; the "
        "first steps wait while it compiles); allowed with --resume (compiled kernels round differently from "
        "eager ones, so switching does not reproduce bit for bit)")
    workers: int | None = setting(
        None, "processes decoding an image folder ahead of the model (default: the CPU cores per process, at most 8; 0:"
        " decode in the job's own process); allowed with --resume")
    decode: str = setting(
        "auto", "who decodes an image folder's JPEGs: auto (nvJPEG on the GPU where the job runs on CUDA, "
        "torchvision is importable and every file is a JPEG; else the workers), cpu (the workers), gpu (refused "
        "where it cannot); allowed with --resume (the two decode and resize a little differently, so switching "
        "does not reproduce bit for bit)")

    #: the job's own limits, beside :data:`JOB_LIMITS`
    LIMITS: ClassVar[dict[str, Limit]] = {}
    #: values for settings that a run's config.json, written before the setting existed, lacks: what that
    #: run did then (where the setting's default has changed since)
    LEGACY_DEFAULTS: ClassVar[dict] = {"decode": "cpu"}

    def check(self, source: str = ""):
        """Refuse any value outside the limits (one line naming the option); returns ``self``."""
        check_limits(self, {**JOB_LIMITS, **self.LIMITS}, source)
        return self


JOB_LIMITS: dict[str, Limit] = {"max_steps": at_least(1), "threads": at_least(1),
                                "checkpoint_minutes": positive(), "amp": one_of(*AMP_MODES),
                                "micro_batch": at_least(1), "workers": at_least(0),
                                "decode": one_of(*DECODE_MODES)}

#: options that may be given with --resume: they change when, where or how fast a run goes
RESUME_OPTIONS = ("max_steps", "threads", "checkpoint_minutes", "device", "workers", "compile", "decode")


def default_workers() -> int:
    """DataLoader processes per job process: the cores torchrun's processes on this node share, up to 8."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(8, (os.cpu_count() or 1) // max(1, per_node)))
