"""ImageNet-style folders (ROOT/train/CLASS/*.jpg, ROOT/val/CLASS/*.jpg), streamed from disk.

Training batches use the paper's augmentation: random-resized crop (area 0.08-1, aspect 3/4-4/3) and
horizontal flip; evaluation resizes the short side to size/0.875 and centre-crops. Like the
in-memory source, each batch is a pure function of (seed, epoch, step), so resume is exact.
Needs Pillow (``pip install spnas[images]``).
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

from spnas.errors import RankLocalError, SpnasError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FolderSplit:
    paths: list[Path]
    labels: torch.Tensor
    input_size: int

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: torch.Tensor) -> "FolderSplit":
        return FolderSplit([self.paths[i] for i in index.tolist()], self.labels[index], self.input_size)


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
        readable = list(pool.map(_readable, paths))
    skipped = [p for p, ok in zip(paths, readable) if not ok]
    if not paths or len(skipped) == len(paths):
        found = f" ({len(skipped)} image files could not be opened, e.g. {skipped[0]})" if skipped else ""
        raise SpnasError(f"imagefolder: no readable images under {directory}{found}")
    if skipped:
        print(f"spnas: note: imagefolder: skipped {len(skipped)} unreadable image(s) under {directory}, "
              f"e.g. {skipped[0]}", file=sys.stderr)
        paths, labels = [p for p, ok in zip(paths, readable) if ok], [l for l, ok in zip(labels, readable) if ok]
    return FolderSplit(paths, torch.tensor(labels), input_size), classes


def _readable(path: Path) -> bool:
    """Whether the image's header opens (cheap: the pixels are decoded only when a batch needs them)."""
    try:
        with _pil().open(path) as img:
            return img.size[0] > 0 and img.size[1] > 0
    except SpnasError:
        raise
    except Exception:  # PIL raises many kinds for a broken file
        return False


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


@dataclass
class FolderBatchSource:
    split: FolderSplit
    batch_size: int
    seed: int = 0
    augment: bool = True
    drop_last: bool = True
    workers: int = 4

    def __post_init__(self) -> None:
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self._pool = ThreadPoolExecutor(self.workers)

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _load(self, args: tuple[int, int, int]) -> np.ndarray:
        index, epoch, step = args
        try:
            img = _pil().open(self.split.paths[index]).convert("RGB")
        except SpnasError:
            raise
        except Exception as err:  # a file that broke after the scan, or whose pixels are corrupt
            raise RankLocalError(f"{self.split.paths[index]}: cannot decode image ({err}); remove or replace it "
                             "(the run can be resumed)") from None
        size = self.split.input_size
        if self.augment:
            rng = random.Random(hash((self.seed, epoch, step, index)))
            img = _random_resized_crop(img, size, rng)
            if rng.random() < 0.5:
                img = img.transpose(0)  # FLIP_LEFT_RIGHT
        else:
            img = _center_crop(img, size)
        return np.asarray(img, dtype=np.uint8)

    def batch(self, epoch: int, step: int, part: int = 0, parts: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's images, or ``part`` of ``parts`` equal slices of them (each image's augmentation
        depends on its index, not on the slice, so the parts put together are the step's batch)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(len(self.split), generator=g) if self.augment else torch.arange(len(self.split))
        index = order[step * self.batch_size : (step + 1) * self.batch_size]
        if parts > 1:
            index = index[part * len(index) // parts : (part + 1) * len(index) // parts]
        arrays = list(self._pool.map(self._load, [(i, epoch, step) for i in index.tolist()]))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255)
        return (x - self._mean) / self._std, self.split.labels[index]

    def epoch_batches(self, epoch: int):
        for step in range(self.steps_per_epoch):
            yield self.batch(epoch, step)
