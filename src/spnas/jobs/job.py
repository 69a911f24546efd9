"""The skeleton every long job shares (search and training): set-up, run directory, checkpoints.

``Job.prepare`` checks everything and loads the data without writing anything (so a bad option or
input costs nothing); the job then checks its own inputs (a LUT, an architecture); ``Job.directory``
creates or locks the run directory on rank 0, joins the other ranks, and sets the thread count;
``Job.checkpoint`` writes a checkpoint that is known finite. The device, the precision and the
replicas live here, once, for both jobs.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from spnas.data.datasets import DataSplits, load_data
from spnas.data.loader import train_source
from spnas.jobs.device import Precision, resolve_device
from spnas.jobs.divergence import DivergenceGuard
from spnas.errors import SpnasError
from spnas.data.device_decode import check_decode
from spnas.jobs.jobconfig import default_workers
from spnas.jobs.replicas import Replicas, check_parts
from spnas.jobs.reproducibility import ENVIRONMENT, deterministic_algorithms, record_environment
from spnas.jobs.rundir import check_new_run_dir
from spnas.jobs.runs import (CHECKPOINT, METRICS, MetricsLog, job_directory, new_config, note, restore_checkpoint,
                        save_checkpoint)


@dataclass
class Job:
    cfg: Any
    resume_dir: str | None
    replicas: Replicas
    precision: Precision
    data: DataSplits
    #: parts of each global batch (one forward pass and one set of BN statistics each)
    num_parts: int
    run_dir: Path | None = None
    _started: float = field(default_factory=time.monotonic)

    @classmethod
    def prepare(cls, cfg: Any, resume_dir: str | None, force: bool, data: DataSplits | None = None) -> "Job":
        """Everything a job needs that can be refused, checked before anything is written. ``data``:
        the job's dataset when the caller has it loaded already (``spnas run``)."""
        replicas = Replicas.from_env()
        device = replicas.device(resolve_device(cfg.device))
        replicas.check_sync_bn(cfg.sync_bn, device)
        precision = Precision(device, cfg.amp)
        micro_batch, num_parts = check_parts(cfg.batch_size, cfg.micro_batch, replicas.world)
        if resume_dir is None:
            check_new_run_dir(cfg.out, force)
        if data is None:
            data = load_data(cfg.data, cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.train_subset)
        if len(data.train) < cfg.batch_size:
            raise SpnasError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} training images")
        check_decode(cfg.decode, device, data)
        cfg = dataclasses.replace(cfg, micro_batch=micro_batch)
        return cls(cfg, resume_dir, replicas, precision, data, num_parts)

    @property
    def resumed(self) -> bool:
        return self.resume_dir is not None

    @property
    def device(self) -> torch.device:
        return self.precision.device

    @contextmanager
    def directory(self, cfg: Any = None, force: bool = False) -> Iterator[Path]:
        """The run directory, locked by rank 0 (a new run's ``cfg`` is stored as config.json), with the
        replicas joined and the run's thread count set; the replicas part when the job ends, and the
        process gets its thread count back (a sweep that resumed one job recorded with another count
        would otherwise run, and record, every later job with that job's count)."""
        if cfg is not None:
            self.cfg = dataclasses.replace(cfg, micro_batch=self.cfg.micro_batch)
        if not self.resumed:
            self.cfg = new_config(self.cfg)
        threads_before = torch.get_num_threads()
        if self.cfg.threads and self.cfg.threads != threads_before:
            torch.set_num_threads(self.cfg.threads)
        self.replicas.start(self.device)
        try:
            with ExitStack() as stack:
                self.replicas.on_main(lambda: stack.enter_context(job_directory(self.cfg, self.resume_dir, force)))
                self.run_dir = Path(self.resume_dir or self.cfg.out).expanduser().absolute()
                if not self.resumed:  # a resume records itself once its checkpoint is accepted (restore)
                    self._record_environment()
                if self.cfg.deterministic:
                    stack.enter_context(deterministic_algorithms())
                self._started = time.monotonic()
                yield self.run_dir
        finally:
            self.replicas.stop()
            torch.set_num_threads(threads_before)

    def restore(self, parts: dict[str, Any], kind: str) -> tuple[int, float]:
        """(step, wall seconds before this process) of a resumed run, (0, 0) for a new one."""
        if not self.resumed:
            return 0, 0.0
        restored = restore_checkpoint(self.run_dir / CHECKPOINT, parts, kind)
        self._record_environment()
        return restored

    def _record_environment(self) -> None:
        """Append this start to the run's environment.json (rank 0); a deterministic run resumed with
        other versions or hardware says it will not reproduce bit for bit."""
        changed = self.replicas.on_main(lambda: record_environment(self.run_dir, self.device, self.cfg.deterministic))
        if changed and self.cfg.deterministic:
            note(f"resuming with another {', '.join(changed)} than the run had (see {ENVIRONMENT}): "
                 "it will not reproduce an uninterrupted run bit for bit")

    def train_source(self):
        """This process's training batches: its parts of each step, decoded ahead for image folders."""
        cfg = self.cfg
        workers = default_workers() if cfg.workers is None else cfg.workers
        return train_source(self.data, cfg.batch_size, cfg.seed, self.device, workers=workers,
                            parts=self.num_parts, mine=self.replicas.parts(self.num_parts), decode=cfg.decode)

    def forward_model(self, net: torch.nn.Module) -> torch.nn.Module:
        """What the steps' forward passes run through: DDP around ``net`` on several ranks, compiled with
        ``--compile`` (evaluation and checkpoints use ``net`` itself)."""
        model = self.replicas.wrap(net, self.device, self.cfg.sync_bn)
        return torch.compile(model) if self.cfg.compile else model

    def guard(self, total: int, lr_hint: str, start: int, model: torch.nn.Module | None = None) -> DivergenceGuard:
        return DivergenceGuard(self.run_dir, total, self.data.num_classes, lr_hint, start or None, model)

    def metrics_log(self, start: int) -> MetricsLog:
        return MetricsLog(self.run_dir / METRICS, resume_step=start if self.resumed else None,
                          enabled=self.replicas.main)

    def wall_s(self, before: float) -> float:
        return before + time.monotonic() - self._started

    def checkpoint(self, step: int, parts: dict[str, Any], kind: str, guard: DivergenceGuard,
                   wall_before: float) -> None:
        """Check the steps since the last check and every part are finite (on every rank, so all stop
        together), then write on rank 0."""
        guard.verify()
        guard.check_state(step, parts)
        if self.replicas.main:
            save_checkpoint(self.run_dir / CHECKPOINT, step, self.wall_s(wall_before), parts, kind)
        guard.saved(step)
