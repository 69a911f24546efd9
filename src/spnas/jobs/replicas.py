"""Data-parallel replicas under ``torchrun``: the one place that knows about ranks.

A job started by ``torchrun --nproc-per-node N -m spnas search|train ...`` runs one process per
replica. Every replica holds the whole model and reads its own share of every global batch; PyTorch's
DistributedDataParallel averages the gradients (gloo on the CPU, NCCL on CUDA), so weights, thresholds,
optimiser state, lambda and the hard decisions stay identical on every rank. Only rank 0 writes files,
logs and progress bars.

Why *parts*: the global batch (``--batch-size``) is cut into ``batch_size / micro_batch`` parts, each
one forward pass with its own BatchNorm statistics and its own indicator-dropout draw (as the paper's
TPU cores each had). The parts are fixed when a run starts; the ranks share them out (one process runs
all of them in turn), so a run started on N processes resumes on any M up to the number of parts and
computes the same steps up to the order of float additions. A rank with several parts accumulates all
but its last under DDP's ``no_sync``; added in the same order, that equals one process bit for bit
(measured here). Added in another order the sums differ by rounding, and a training run can amplify
that: in the tiny test network (random labels, BatchNorm over 4 images of 1x1 pixels) the difference
grew 30-50x per step, so tests compare only the first steps after a change of process count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from spnas.errors import RankLocalError, SpnasError

T = TypeVar("T")
#: what torchrun sets in each worker's environment
WORLD_ENV, RANK_ENV, LOCAL_RANK_ENV = "WORLD_SIZE", "RANK", "LOCAL_RANK"
#: an indicator-dropout seed offset per part, far from the per-step seeds (part 0 keeps the step's seed)
PART_SEED_STRIDE = 1 << 40


@dataclass(frozen=True)
class Replicas:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Replicas":
        """The replica this process is: torchrun's environment, or a single process without it."""
        try:
            world = int(os.environ.get(WORLD_ENV, "1"))
            rank, local = int(os.environ.get(RANK_ENV, "0")), int(os.environ.get(LOCAL_RANK_ENV, "0"))
        except ValueError:
            raise RankLocalError(f"{WORLD_ENV}/{RANK_ENV}/{LOCAL_RANK_ENV} must be integers (they are torchrun's; "
                             "unset them to run as one process)") from None
        if world < 1 or not 0 <= rank < world:
            raise RankLocalError(f"{RANK_ENV}={rank} {WORLD_ENV}={world}: not a valid replica (unset them to run "
                             "as one process)")
        return cls(rank, world, local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self, device: torch.device) -> torch.device:
        """Under torchrun each process takes the GPU of its local rank."""
        if not self.distributed or device.type != "cuda":
            return device
        if device.index is not None:
            raise SpnasError(f"--device {device}: under torchrun each process uses the GPU of its local rank; "
                             "pass --device cuda (or auto)")
        if self.local_rank >= torch.cuda.device_count():
            raise SpnasError(f"local rank {self.local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                             "start at most that many processes per node")
        return torch.device("cuda", self.local_rank)

    def check_sync_bn(self, sync_bn: bool, device: torch.device) -> None:
        if sync_bn and device.type != "cuda":
            raise SpnasError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only); "
                             "without it each replica normalises over its own part of the batch")

    def start(self, device: torch.device) -> None:
        """Join the process group (gloo on the CPU, NCCL on CUDA); nothing to do for one process."""
        if not self.distributed or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's collectives run on the current device
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")

    def stop(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    def parts(self, num_parts: int) -> range:
        """The parts of each global batch this rank computes: a contiguous share (all, in one process)."""
        return range(self.rank * num_parts // self.world, (self.rank + 1) * num_parts // self.world)

    def wrap(self, net: nn.Module, device: torch.device, sync_bn: bool = False) -> nn.Module:
        """The module to run forward passes through: DDP around ``net`` when there are several ranks."""
        if not self.distributed:
            return net
        if sync_bn:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(net, device_ids=ids)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The sum over ranks."""
        if self.distributed:
            values = values.clone()
            dist.all_reduce(values)
        return values

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on every rank when it is true on any (one collective for all of them)."""
        if not self.distributed:
            return flags
        values = torch.tensor([1.0 if f else 0.0 for f in flags], device=self._collective_device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in values.tolist())

    @property
    def _collective_device(self) -> torch.device:
        """NCCL reduces only CUDA tensors; gloo only CPU ones."""
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def on_main(self, work: Callable[[], T]) -> T | None:
        """``work()`` on rank 0 only, the others waiting for it; its refusal stops every rank (the
        others quietly: rank 0 prints the line). Returns what ``work`` returned (None elsewhere)."""
        result, error = None, None
        if self.main:
            try:
                result = work()
            except (SpnasError, OSError) as err:
                error = err
        shared = [str(error) if error is not None else None]
        if self.distributed:
            dist.broadcast_object_list(shared, src=0)
        if error is not None:
            raise error
        if shared[0] is not None:
            raise SpnasError(shared[0])
        return result


def is_main_process() -> bool:
    """Rank 0 under torchrun, or a process started without it: the one that prints results."""
    return os.environ.get(RANK_ENV, "0") == "0"


def check_parts(batch_size: int, micro_batch: int | None, world: int) -> tuple[int, int]:
    """(micro-batch, number of parts of a global batch), or one line saying why the sizes do not fit.

    ``micro_batch`` None: a new run's default, the global batch over the number of processes.
    """
    if micro_batch is None:
        if batch_size % world:
            raise SpnasError(f"{world} processes do not divide --batch-size {batch_size} (the global batch): "
                             f"use a multiple of {world}")
        micro_batch = batch_size // world
    if micro_batch < 1 or batch_size % micro_batch:
        raise SpnasError(f"--micro-batch {micro_batch} does not divide --batch-size {batch_size}")
    parts = batch_size // micro_batch
    if world > parts:
        raise SpnasError(f"the run's {parts} parts of {micro_batch} images per step can use at most {parts} "
                         f"processes, not {world} (a new run: lower --micro-batch)")
    return micro_batch, parts


def part_seed(step_seed: int, part: int) -> int:
    """The indicator-dropout seed of one part of a step (part 0: the step's own seed)."""
    return step_seed + part * PART_SEED_STRIDE
