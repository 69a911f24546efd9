"""ImageNet-style folders (ROOT/train/CLASS/*.jpg, ROOT/val/CLASS/*.jpg), streamed from disk.

Training batches use the paper's augmentation: random-resized crop (area 0.08-1, aspect 3/4-4/3) and
horizontal flip; evaluation resizes the short side to size/0.875 and centre-crops. Images are decoded
by ``torch.utils.data.DataLoader`` worker processes (``--workers``), which keep the next batches ready
while the model trains. Each image is a pure function of (seed, epoch, step, index) and the batch
sampler of (seed, epoch), so resume is exact, mid-epoch included. Folders whose images are all grey
give 1-channel data. Needs Pillow (``pip install spnas[images]``).
"""

from __future__ import annotations

import math
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

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
        with _pil().open(path) as img:
            return img.mode if img.size[0] > 0 and img.size[1] > 0 else None
    except SpnasError:
        raise
    except Exception:  # PIL raises many kinds for a broken file
        return None


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise SpnasError("imagefolder needs Pillow: pip install 'spnas[images]'") from None
    return Image


def _random_resized_crop(img, size: int, rng: random.Random):
    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.resize((size, size), box=(x, y, x + cw, y + ch))
    return _center_crop(img, size)


def _center_crop(img, size: int):
    w, h = img.size
    scale = size / 0.875 / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))))
    w, h = img.size
    x, y = (w - size) // 2, (h - size) // 2
    return img.crop((x, y, x + size, y + size))


@dataclass(frozen=True)
class FolderImages(Dataset):
    """Decoded, augmented images keyed by (index, epoch, step): what a DataLoader worker computes."""

    split: FolderSplit
    seed: int
    augment: bool

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        index, epoch, step = key
        path = self.split.paths[index]
        try:
            img = _pil().open(path).convert("L" if self.split.channels == 1 else "RGB")
        except SpnasError:
            raise
        except Exception as err:  # a file that broke after the scan, or whose pixels are corrupt
            raise RankLocalError(f"{path}: cannot decode image ({err}); remove or replace it "
                                 "(the run can be resumed)") from None
        size = self.split.input_size
        if self.augment:
            rng = random.Random(hash((self.seed, epoch, step, index)))
            img = _random_resized_crop(img, size, rng)
            if rng.random() < 0.5:
                img = img.transpose(0)  # FLIP_LEFT_RIGHT
        else:
            img = _center_crop(img, size)
        pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        return pixels.view(size, size, -1).permute(2, 0, 1), int(self.split.labels[index])


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
    pin_memory: bool = False

    def __post_init__(self) -> None:
        mean, std = (GREY_MEAN, GREY_STD) if self.split.channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
        self._mean = torch.tensor(mean).view(1, -1, 1, 1)
        self._std = torch.tensor(std).view(1, -1, 1, 1)
        self._images = FolderImages(self.split, self.seed, self.augment)
        self._sampler = StepSampler(self)
        self._loader = DataLoader(self._images, batch_sampler=self._sampler, num_workers=self.workers,
                                  persistent_workers=self.workers > 0 and self.augment, prefetch_factor=4 if self.workers > 0 else None,
                                  pin_memory=self.pin_memory, worker_init_fn=_one_thread if self.workers > 0 else None)
        self._batches, self._next = None, None

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.augment:
            return torch.arange(len(self.split))
        return torch.randperm(len(self.split), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))

    def part_index(self, epoch: int, step: int, part: int, parts: int) -> torch.Tensor:
        index = self._order(epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        return index[part * len(index) // parts : (part + 1) * len(index) // parts]

    def batch(self, epoch: int, step: int, part: int = 0, parts: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's images, or ``part`` of ``parts`` equal slices of them (each image's augmentation
        depends on its index, not on the slice, so the parts put together are the step's batch)."""
        if parts != self.parts or part not in self.mine:  # not this process's training order: decode now
            keys = [(i, epoch, step) for i in self.part_index(epoch, step, part, parts).tolist()]
            x, y = default_collate([self._images[k] for k in keys])
        else:
            if self._batches is None or self._next != (epoch, step, part):
                self._sampler.epoch, self._sampler.step, self._sampler.part = epoch, step, part
                self._batches = iter(self._loader)
            x, y = next(self._batches)
            following = part + 1 < self.mine.stop
            self._next = (epoch, step, part + 1) if following else (epoch, step + 1, self.mine.start)
            if not following and step + 1 == self.steps_per_epoch:
                self._next, self._batches = None, None  # the sampler ends with the epoch
        return (x.float().div_(255) - self._mean) / self._std, y

    def epoch_batches(self, epoch: int):
        for step in range(self.steps_per_epoch):
            yield self.batch(epoch, step)
