"""ImageNet-style folders (ROOT/train/CLASS/*.jpg, ROOT/val/CLASS/*.jpg): streamed from disk, or decoded
once and held in memory when they are small (:func:`decode_all`, ``spnas.data.datasets``).

Training batches use the paper's augmentation: random-resized crop (area 0.08-1, aspect 3/4-4/3) and
horizontal flip; evaluation resizes the short side to size/0.875 and centre-crops. Images are decoded
by ``torch.utils.data.DataLoader`` worker processes (``--workers``), which keep the next batches ready
while the model trains. Each image is a pure function of (seed, epoch, step, index) and the batch
sampler of (seed, epoch), so resume is exact, mid-epoch included. Folders whose images are all grey
give 1-channel data. Needs Pillow (``pip install spnas[images]``).
"""

from __future__ import annotations

import math
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from spnas.data.decode import Box, load_region, pil
from spnas.data.device_decode import BatchDecoder, EncodedImages, choose_decoder, collate_encoded, crop_resize
from spnas.errors import RankLocalError, SpnasError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the same statistics for grey images (ITU-R 601 luma of the RGB ones)
GREY_MEAN, GREY_STD = (0.449,), (0.226,)
#: PIL modes of images without colour
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass
class FolderSplit:
    paths: list[Path]
    labels: torch.Tensor
    input_size: int
    #: 1 when every image of the folder is grey, else 3
    channels: int = 3

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: torch.Tensor) -> "FolderSplit":
        return FolderSplit([self.paths[i] for i in index.tolist()], self.labels[index], self.input_size,
                           self.channels)


def scan(root: Path, split: str, input_size: int, classes: list[str] | None = None) -> tuple[FolderSplit, list[str]]:
    """Every readable image under ROOT/SPLIT/CLASS/; unreadable ones are skipped with a note."""
    directory = root / split
    if not directory.is_dir():
        raise SpnasError(f"imagefolder: {directory} is missing; expected {root}/train/CLASS/*.jpg and {root}/val/CLASS/*.jpg")
    classes = classes or sorted(d.name for d in directory.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise SpnasError(f"imagefolder: {directory} has {len(classes)} class folder(s); a classifier needs at least 2")
    paths, labels = [], []
    for i, name in enumerate(classes):
        for p in sorted((directory / name).rglob("*")):
            if p.suffix.lower() in EXTENSIONS:
                paths.append(p)
                labels.append(i)
    with ThreadPoolExecutor(8) as pool:
        modes = list(pool.map(_mode, paths))
    readable = [m is not None for m in modes]
    skipped = [p for p, ok in zip(paths, readable) if not ok]
    if not paths or len(skipped) == len(paths):
        found = f" ({len(skipped)} image files could not be opened, e.g. {skipped[0]})" if skipped else ""
        raise SpnasError(f"imagefolder: no readable images under {directory}{found}")
    if skipped:
        print(f"spnas: note: imagefolder: skipped {len(skipped)} unreadable image(s) under {directory}, "
              f"e.g. {skipped[0]}", file=sys.stderr)
        paths, labels = [p for p, ok in zip(paths, readable) if ok], [l for l, ok in zip(labels, readable) if ok]
    grey = all(m in GREY_MODES for m in modes if m is not None)
    return FolderSplit(paths, torch.tensor(labels), input_size, 1 if grey else 3), classes


def _mode(path: Path) -> str | None:
    """The image's PIL mode, or None when its header does not open (cheap: the pixels are decoded only
    when a batch needs them)."""
    try:
        with pil().open(path) as img:
            return img.mode if img.size[0] > 0 and img.size[1] > 0 else None
    except SpnasError:
        raise
    except Exception:  # PIL raises many kinds for a broken file
        return None


def random_resized_box(width: int, height: int, rng: random.Random) -> Box | None:
    """The paper's random-resized crop: area 0.08-1 of the image, aspect 3/4-4/3, at a random place; None
    when ten draws do not fit (the centre crop is taken then)."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < cw <= width and 0 < ch <= height:
            x, y = rng.randint(0, width - cw), rng.randint(0, height - ch)
            return (x, y, x + cw, y + ch)
    return None


def center_box(width: int, height: int, size: int) -> Box:
    """Evaluation's crop: the short side resized to size / 0.875, its centre ``size`` x ``size``, as a
    region of the image itself."""
    scale = size / 0.875 / min(width, height)
    w, h = max(size, round(width * scale)), max(size, round(height * scale))
    x, y = (w - size) // 2, (h - size) // 2
    return (x * width / w, y * height / h, (x + size) * width / w, (y + size) * height / h)


def decode_image(path: Path, grey: bool, size: int, rng: random.Random | None = None) -> np.ndarray:
    """One image as a batch needs it, uint8 (size, size, C): with ``rng`` the paper's training
    augmentation (random-resized crop, horizontal flip), without it evaluation's centre crop."""
    if rng is None:
        return load_region(path, grey, size, lambda w, h: center_box(w, h, size))
    flip = []  # drawn after the crop, as before: the draws of an image keep their order

    def region(w: int, h: int) -> Box:
        box = random_resized_box(w, h, rng) or center_box(w, h, size)
        flip.append(rng.random() < 0.5)
        return box

    return load_region(path, grey, size, region, fast=True, flip=lambda: flip[0])


def decode_all(split: FolderSplit, size: int, what: str) -> torch.Tensor:
    """Every image of ``split`` decoded once at ``size`` (evaluation's centre crop): uint8 (N, C, size, size),
    in threads (PIL and simplejpeg decode outside the GIL), with a progress bar."""
    from spnas.jobs.progress import bar

    out = torch.empty(len(split), split.channels, size, size, dtype=torch.uint8)
    grey = split.channels == 1

    def one(i: int) -> None:
        try:
            out[i] = torch.from_numpy(decode_image(split.paths[i], grey, size)).permute(2, 0, 1)
        except SpnasError:
            raise
        except Exception as err:
            raise SpnasError(f"{split.paths[i]}: cannot decode image ({err}); remove or replace it") from None

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool, bar(len(split), f"decoding {what}", "img") as progress:
        for _ in pool.map(one, range(len(split))):
            progress.update()
    return out


@dataclass(frozen=True)
class FolderImages(Dataset):
    """Decoded, augmented images keyed by (index, epoch, step): what a DataLoader worker computes, as
    uint8 (H, W, C) (normalised on the device, where the batch goes)."""

    split: FolderSplit
    seed: int
    augment: bool

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        index, epoch, step = key
        path = self.split.paths[index]
        rng = random.Random(hash((self.seed, epoch, step, index))) if self.augment else None
        try:
            pixels = decode_image(path, self.split.channels == 1, self.split.input_size, rng)
        except SpnasError:
            raise
        except Exception as err:  # a file that broke after the scan, or whose pixels are corrupt
            raise RankLocalError(f"{path}: cannot decode image ({err}); remove or replace it "
                                 "(the run can be resumed)") from None
        return torch.from_numpy(np.ascontiguousarray(pixels)), int(self.split.labels[index])


@dataclass
class StepSampler:
    """The keys of each part, step after step, from a start position to the end of the epoch.

    The order of an epoch is a seeded permutation (the identity without augmentation), so a sampler
    started anywhere yields what an uninterrupted run would have from there.
    """

    source: "FolderBatchSource"
    epoch: int = 0
    step: int = 0
    part: int = 0

    def __iter__(self):
        src, epoch = self.source, self.epoch
        for step in range(self.step, src.steps_per_epoch):
            for part in src.mine:
                if step > self.step or part >= self.part:
                    yield [(i, epoch, step) for i in src.part_index(epoch, step, part, src.parts).tolist()]

    def __len__(self) -> int:
        src = self.source
        return (src.steps_per_epoch - self.step) * len(src.mine) - sum(p < self.part for p in src.mine)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # decoding is PIL's work; torch threads in N workers would only compete


@dataclass
class FolderBatchSource:
    """Batches of a folder, decoded ahead by DataLoader workers (``workers=0``: in this process).

    ``batch(epoch, step, part, parts)`` is asked for in order during training; the loader serves the
    next part from its prefetch queue, and starts again at the asked position after a jump (resume,
    a BatchNorm re-estimate at an epoch end).
    """

    split: FolderSplit
    batch_size: int
    seed: int = 0
    augment: bool = True
    drop_last: bool = True
    workers: int = 4
    #: the parts of each step and those this process computes (see spnas.jobs.replicas)
    parts: int = 1
    mine: range = range(0, 1)
    #: where batches go: they cross as uint8 (a quarter of float32's bytes) and are normalised there
    device: torch.device | None = None
    #: who decodes the JPEGs: ``cpu`` the workers, ``gpu`` nvJPEG on the device, ``auto`` the GPU where it can
    #: (:mod:`spnas.data.device_decode`)
    decode: str = "auto"
    #: the device's batch decoder itself (tests give a stand-in); None: as ``decode`` says
    device_decoder: BatchDecoder | None = None

    def __post_init__(self) -> None:
        mean, std = (GREY_MEAN, GREY_STD) if self.split.channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
        self._device = self.device or torch.device("cpu")
        self._mean = torch.tensor(mean, device=self._device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, device=self._device).view(1, -1, 1, 1)
        self._perm_epoch, self._perm = -1, None
        if self.device_decoder is None:
            self.device_decoder = choose_decoder(self.decode, self._device, self.split.paths)
        if self.device_decoder is None:
            self._images, collate = FolderImages(self.split, self.seed, self.augment), default_collate
        else:  # the workers only read files: the device decodes, crops and resizes
            self._images = EncodedImages(self.split.paths, self.split.labels, self.split.input_size, self.seed,
                                         self.augment)
            collate = collate_encoded
        self._collate = collate
        self._sampler = StepSampler(self)
        self._loader = DataLoader(self._images, batch_sampler=self._sampler, num_workers=self.workers,
                                  collate_fn=collate, persistent_workers=self.workers > 0 and self.augment,
                                  prefetch_factor=4 if self.workers > 0 else None,
                                  pin_memory=self._device.type == "cuda",
                                  worker_init_fn=_one_thread if self.workers > 0 else None)
        self._batches, self._next = None, None

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, epoch: int) -> torch.Tensor:
        """The epoch's order (kept: ImageNet's permutation takes longer to draw than a batch to serve)."""
        if self._perm_epoch != epoch:
            self._perm = (torch.randperm(len(self.split), generator=torch.Generator().manual_seed(
                self.seed * 100_003 + epoch)) if self.augment else torch.arange(len(self.split)))
            self._perm_epoch = epoch
        return self._perm

    def part_index(self, epoch: int, step: int, part: int, parts: int) -> torch.Tensor:
        index = self._order(epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        return index[part * len(index) // parts : (part + 1) * len(index) // parts]

    def batch(self, epoch: int, step: int, part: int = 0, parts: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's images, or ``part`` of ``parts`` equal slices of them (each image's augmentation
        depends on its index, not on the slice, so the parts put together are the step's batch)."""
        if parts != self.parts or part not in self.mine:  # not this process's training order: decode now
            keys = [(i, epoch, step) for i in self.part_index(epoch, step, part, parts).tolist()]
            batch = self._collate([self._images[k] for k in keys])
        else:
            if self._batches is None or self._next != (epoch, step, part):
                self._sampler.epoch, self._sampler.step, self._sampler.part = epoch, step, part
                self._batches = iter(self._loader)
            batch = next(self._batches)
            following = part + 1 < self.mine.stop
            self._next = (epoch, step, part + 1) if following else (epoch, step + 1, self.mine.start)
            if not following and step + 1 == self.steps_per_epoch:
                self._next, self._batches = None, None  # the sampler ends with the epoch
        if self.device_decoder is None:
            x, y = batch
            x = x.to(self._device, non_blocking=True).permute(0, 3, 1, 2).float()  # NHWC in memory: channels_last
        else:
            files, boxes, flips, y = batch
            x = crop_resize(self._decoded(files), boxes, flips, self.split.input_size)
        return x.div_(255).sub_(self._mean).div_(self._std), y.to(self._device, non_blocking=True)

    def _decoded(self, files: list[torch.Tensor]) -> list[torch.Tensor]:
        try:
            return self.device_decoder(files, self.split.channels == 1)
        except RuntimeError as err:  # nvJPEG refuses the whole batch for one file it cannot read
            raise RankLocalError(f"{self.split.paths[0].parents[1]}: a JPEG of this batch cannot be decoded on the "
                                 f"GPU ({str(err).splitlines()[0][:120]}); run with --decode cpu, which names the "
                                 "file") from None

    def epoch_batches(self, epoch: int):
        for step in range(self.steps_per_epoch):
            yield self.batch(epoch, step)
