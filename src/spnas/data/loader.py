"""Batches from in-memory uint8 tensors, augmented with whole-batch tensor ops.

Every batch is a pure function of (seed, epoch, step): the order is a seeded permutation per epoch
and augmentation draws from a generator seeded per step. Resuming mid-run therefore replays exactly
the batches an uninterrupted run would have seen. With a ``device``, the images live there and are
augmented there; the random draws stay on the CPU generator, so a batch is the same on every device.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from spnas.data.datasets import DataSplits, DecodedFolderSplit, TensorSplit
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
    #: the paper's random-resized crop to this size (a decoded folder's training images), instead of a
    #: padded crop of the image's own size
    resized_crop: int | None = None

    def __post_init__(self) -> None:
        self._device = self.device or self.split.images.device
        if self.split.images.device != self._device:
            self.split = dataclasses.replace(self.split, images=self.split.images.to(self._device),
                                             labels=self.split.labels.to(self._device))
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

    def batch(self, epoch: int, step_in_epoch: int, part: int = 0, parts: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of one step, or of ``part`` of ``parts`` equal slices of it: the augmentation
        is drawn for the whole batch first, so the parts of a step put together are the step's batch."""
        index = self._order(epoch)[step_in_epoch * self.batch_size : (step_in_epoch + 1) * self.batch_size]
        draws = None
        if self.augment:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 100_003 + step_in_epoch)
            draws = self._draws(len(index), g)
        if parts > 1:
            share = slice(part * len(index) // parts, (part + 1) * len(index) // parts)
            index = index[share]
            draws = tuple(d[share] for d in draws) if draws else None
        index = index.to(self._device)
        x = self.split.images[index].float().div_(255)
        if draws:
            x = self._augment(x, *draws)
        return (x - self._mean) / self._std, self.split.labels[index]

    def _draws(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Per image: the crop (offsets dy, dx; or a resized crop's box) and whether to flip, drawn on the
        CPU in a fixed order."""
        if self.resized_crop:
            return resized_crop_draws(n, g)
        p = self.crop_padding
        zero = torch.zeros(n, dtype=torch.long)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=g) if p else zero
        dx = torch.randint(0, 2 * p + 1, (n,), generator=g) if p else zero
        flip = torch.rand(n, generator=g) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return dy, dx, flip

    def _augment(self, x: torch.Tensor, *draws: torch.Tensor) -> torch.Tensor:
        if self.resized_crop:
            return resized_crop(x, self.resized_crop, *draws)
        dy, dx, flip = draws
        n, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))
            dy, dx = dy.to(x.device), dx.to(x.device)
            rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h)).view(n, 1, h, 1).expand(
                n, x.shape[1], h, w + 2 * p)
            padded = padded.gather(2, rows)
            cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w)).view(n, 1, 1, w).expand(
                n, x.shape[1], h, w)
            x = padded.gather(3, cols)
        if self.flip:
            flip = flip.to(x.device)
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        return x

    def epoch_batches(self, epoch: int):
        for step in range(self.steps_per_epoch):
            yield self.batch(epoch, step)


def resized_crop_draws(n: int, g: torch.Generator, attempts: int = 10) -> tuple[torch.Tensor, ...]:
    """The paper's random-resized crop of a square image, per image: width and height as shares of its side
    (area 0.08-1, aspect 3/4-4/3, the first of ``attempts`` draws that fits, else the whole image), the
    left and top edges, and whether to flip."""
    area = torch.empty(n, attempts).uniform_(0.08, 1.0, generator=g)
    ratio = torch.empty(n, attempts).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g).exp()
    w, h = (area * ratio).sqrt(), (area / ratio).sqrt()
    fits = (w <= 1) & (h <= 1)
    first = fits.int().argmax(1, keepdim=True)
    found = fits.any(1)
    w = torch.where(found, w.gather(1, first)[:, 0], 1.0)
    h = torch.where(found, h.gather(1, first)[:, 0], 1.0)
    x0, y0 = torch.rand(n, generator=g) * (1 - w), torch.rand(n, generator=g) * (1 - h)
    return w, h, x0, y0, torch.rand(n, generator=g) < 0.5


def resized_crop(x: torch.Tensor, size: int, w: torch.Tensor, h: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor,
                 flip: torch.Tensor) -> torch.Tensor:
    """Each image's box (shares of its side) resized to ``size`` (bilinear) and flipped where asked, in two
    ops for the whole batch (an affine sampling grid)."""
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -w, w)
    theta[:, 0, 2] = 2 * x0 + w - 1
    theta[:, 1, 1] = h
    theta[:, 1, 2] = 2 * y0 + h - 1
    grid = F.affine_grid(theta.to(x.device), [n, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def train_source(data: DataSplits, batch_size: int, seed: int, device: torch.device | None = None, *,
                 workers: int = 0, parts: int = 1, mine: range = range(0, 1),
                 decode: str = "auto") -> BatchSource | FolderBatchSource:
    """Augmented training batches; in-memory images are moved to ``device`` once. Folders stream from
    disk through ``workers`` DataLoader processes, decoding ahead the ``mine`` of ``parts`` of each
    step this process will ask for, as uint8 (pinned for a fast copy to CUDA), normalised on ``device``;
    ``decode``: who decodes their JPEGs (:mod:`spnas.data.device_decode`)."""
    if isinstance(data.train, FolderSplit):
        return FolderBatchSource(data.train, batch_size, seed, workers=workers, parts=parts, mine=mine,
                                 device=device, decode=decode)
    return BatchSource(data.train, batch_size, data.mean, data.std, seed, augment=True, flip=data.flip,
                       crop_padding=data.crop_padding, device=device,
                       resized_crop=data.train.output_size if isinstance(data.train, DecodedFolderSplit) else None)


def eval_source(data: DataSplits, split, batch_size: int = 500, device: torch.device | None = None, *,
                workers: int = 0, decode: str = "auto") -> BatchSource | FolderBatchSource:
    if isinstance(split, FolderSplit):
        return FolderBatchSource(split, min(batch_size, 100), augment=False, drop_last=False, workers=workers,
                                 device=device, decode=decode)
    return BatchSource(split, batch_size, data.mean, data.std, augment=False, drop_last=False, device=device)
