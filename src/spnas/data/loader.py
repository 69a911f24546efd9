"""Batches from in-memory uint8 tensors, augmented with whole-batch tensor ops.

Every batch is a pure function of (seed, epoch, step): the order is a seeded permutation per epoch
and augmentation draws from a generator seeded per step. Resuming mid-run therefore replays exactly
the batches an uninterrupted run would have seen. With a ``device``, the images live there and are
augmented there; the random draws stay on the CPU generator, so a batch is the same on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spnas.data.datasets import DataSplits, TensorSplit
from spnas.data.imagefolder import FolderBatchSource, FolderSplit


@dataclass
class BatchSource:
    split: TensorSplit
    batch_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    seed: int = 0
    augment: bool = True
    flip: bool = True
    crop_padding: int = 2
    drop_last: bool = True
    device: torch.device | None = None

    def __post_init__(self) -> None:
        self._device = self.device or self.split.images.device
        if self.split.images.device != self._device:
            self.split = TensorSplit(self.split.images.to(self._device), self.split.labels.to(self._device))
        self._mean = torch.tensor(self.mean, device=self._device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, device=self._device).view(1, -1, 1, 1)
        self._perm_epoch, self._perm = -1, None

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, epoch: int) -> torch.Tensor:
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.split), generator=g), epoch
        return self._perm

    def batch(self, epoch: int, step_in_epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self._order(epoch)[step_in_epoch * self.batch_size : (step_in_epoch + 1) * self.batch_size]
        index = index.to(self._device)
        x = self.split.images[index].float().div_(255)
        if self.augment:
            x = self._augment(x, torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_003 + step_in_epoch))
        return (x - self._mean) / self._std, self.split.labels[index]

    def _augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=g).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=g).to(x.device)
            rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)).view(n, 1, h, 1).expand(
                n, x.shape[1], h, w + 2 * p)
            padded = padded.gather(2, rows)
            cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)).view(n, 1, 1, w).expand(
                n, x.shape[1], h, w)
            x = padded.gather(3, cols)
        if self.flip:
            flip = (torch.rand(n, generator=g) < 0.5).to(x.device)
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        return x

    def epoch_batches(self, epoch: int):
        for step in range(self.steps_per_epoch):
            yield self.batch(epoch, step)


def train_source(data: DataSplits, batch_size: int, seed: int,
                 device: torch.device | None = None) -> BatchSource | FolderBatchSource:
    """Augmented training batches; in-memory images are moved to ``device`` once (folders stream
    from disk on the CPU and the step moves each batch)."""
    if isinstance(data.train, FolderSplit):
        return FolderBatchSource(data.train, batch_size, seed)
    return BatchSource(data.train, batch_size, data.mean, data.std, seed, augment=True, flip=data.flip,
                       crop_padding=data.crop_padding, device=device)


def eval_source(data: DataSplits, split, batch_size: int = 500,
                device: torch.device | None = None) -> BatchSource | FolderBatchSource:
    if isinstance(split, FolderSplit):
        return FolderBatchSource(split, min(batch_size, 100), augment=False, drop_last=False)
    return BatchSource(split, batch_size, data.mean, data.std, augment=False, drop_last=False, device=device)
