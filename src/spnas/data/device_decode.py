"""JPEGs decoded on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``): the workers only read files.

Why: PIL decodes about 400-600 224-px training images per second per core, so a GPU that trains at
1,600 img/s needs four or more cores doing nothing else (``bench/data_rate.py``). nvJPEG decodes a
whole batch on the GPU; the DataLoader workers then only read each file's bytes and its header (for
the crop, drawn exactly as on the CPU: the same box and flip for the same (seed, epoch, step, index)),
and the crop, resize (bilinear, antialiased) and flip run on the device too. The pixels differ from
the CPU path's a little (another decoder and resampler), so switching path is not bit for bit.

Used where all hold: the job runs on CUDA, ``torchvision.io.decode_jpeg`` is importable, and every file
of the split is a JPEG (``--decode gpu`` refuses otherwise; ``auto`` falls back to the workers).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from spnas.data.decode import Box, pil, simplejpeg
from spnas.errors import RankLocalError, SpnasError

DECODE_MODES = ("auto", "cpu", "gpu")
JPEG_SUFFIXES = (".jpg", ".jpeg")

#: (encoded files as 1-D uint8 CPU tensors, grey) -> decoded images, each uint8 (C, H, W) on the device
BatchDecoder = Callable[[list[torch.Tensor], bool], list[torch.Tensor]]


def nvjpeg_decoder(device: torch.device) -> BatchDecoder | None:
    """torchvision's batched nvJPEG decode onto ``device``, or None where torchvision cannot be imported."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # not installed, or built against another torch (it then fails at import)
        return None

    def decode(files: list[torch.Tensor], grey: bool) -> list[torch.Tensor]:
        return decode_jpeg(files, mode=ImageReadMode.GRAY if grey else ImageReadMode.RGB, device=device)

    return decode


def gpu_decoder(device: torch.device, paths: list[Path]) -> tuple[BatchDecoder | None, str | None]:
    """nvJPEG onto ``device`` for these files, or (None, what is missing for it)."""
    if device.type != "cuda":
        return None, f"the job runs on {device.type}, not on a CUDA GPU"
    if any(p.suffix.lower() not in JPEG_SUFFIXES for p in paths):
        return None, "the folder holds files other than JPEGs"
    decoder = nvjpeg_decoder(device)
    if decoder is None:
        return None, "torchvision (with nvJPEG) cannot be imported: pip install torchvision built for this torch"
    return decoder, None


def choose_decoder(mode: str, device: torch.device, paths: list[Path]) -> BatchDecoder | None:
    """The device decoder ``mode`` asks for (None: the workers decode): ``cpu`` never, ``gpu`` always (or a
    one-line refusal saying what is missing), ``auto`` where it can."""
    if mode not in DECODE_MODES:
        raise SpnasError(f"--decode must be one of: {', '.join(DECODE_MODES)}, got {mode!r}")
    if mode == "cpu":
        return None
    decoder, missing = gpu_decoder(device, paths)
    if missing and mode == "gpu":
        raise SpnasError(f"--decode gpu: {missing}; use --decode cpu (or auto)")
    return decoder


def check_decode(mode: str, device: torch.device, data) -> None:
    """Before a job starts: refuse ``--decode gpu`` where it cannot run on ``data`` (a DataSplits), and say
    why a streamed folder on a GPU is decoded by the CPU workers under ``auto`` (the job is slower for it).
    Data held in memory is decoded already: nothing to choose."""
    from spnas.data.imagefolder import FolderSplit
    from spnas.jobs.runs import note

    if not isinstance(data.train, FolderSplit):
        if mode == "gpu":
            raise SpnasError(f"--decode gpu: {data.name} is held in memory, decoded once already; leave --decode "
                             "at auto, or stream a folder (imagefolder:SIZE:stream) to decode it on the GPU")
        return
    if mode == "auto" and device.type == "cuda":  # looked at once: the paths of a large folder are many
        _, missing = gpu_decoder(device, data.train.paths)
        if missing:
            note(f"JPEGs are decoded by the CPU workers, not on the GPU: {missing}")
    else:
        choose_decoder(mode, device, data.train.paths)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's header, without decoding its pixels."""
    if simplejpeg is not None:
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            return width, height
        except (ValueError, RuntimeError):
            pass
    with pil().open(io.BytesIO(data)) as img:
        return img.size


@dataclass(frozen=True)
class EncodedImages(Dataset):
    """What a worker does when the GPU decodes: the file's bytes, the crop box and the flip of (index, epoch,
    step), drawn as :func:`spnas.data.imagefolder.decode_image` draws them, and the label."""

    paths: list[Path]
    labels: torch.Tensor
    size: int
    seed: int
    augment: bool

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[float, ...], bool, int]:
        from spnas.data.imagefolder import center_box, random_resized_box

        index, epoch, step = key
        path = self.paths[index]
        try:
            data = path.read_bytes()
            width, height = image_size(data)
        except Exception as err:
            raise RankLocalError(f"{path}: cannot read image ({err}); remove or replace it "
                                 "(the run can be resumed)") from None
        flip = False
        if self.augment:
            rng = random.Random(hash((self.seed, epoch, step, index)))
            box = random_resized_box(width, height, rng) or center_box(width, height, self.size)
            flip = rng.random() < 0.5
        else:
            box = center_box(width, height, self.size)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), tuple(map(float, box)), flip, int(self.labels[index])


def collate_encoded(items: list) -> tuple[list[torch.Tensor], list[tuple[float, ...]], list[bool], torch.Tensor]:
    """Files of different lengths, their boxes and flips stay lists (read on the host, never a tensor to
    wait for); the labels become a tensor."""
    files, boxes, flips, labels = zip(*items)
    return list(files), list(boxes), list(flips), torch.tensor(labels)


def crop_resize(images: list[torch.Tensor], boxes: list[Box], flips: list[bool], size: int) -> torch.Tensor:
    """Each decoded image's box resized to ``size`` x ``size`` (bilinear, antialiased as PIL's resize is) and
    mirrored where asked: float (N, C, size, size) in 0-255, channels_last, on the images' device."""
    n, channels = len(images), images[0].shape[0]
    out = torch.empty(n, size, size, channels, device=images[0].device).permute(0, 3, 1, 2)
    for i, (img, box, flip) in enumerate(zip(images, boxes, flips)):
        crop = _region(img, box)
        resized = F.interpolate(crop[None].float(), size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False)[0]
        out[i] = resized.flip(-1) if flip else resized
    return out


def _region(img: torch.Tensor, box: Box) -> torch.Tensor:
    """The whole pixels that ``box`` covers (the boxes of training crops are whole pixels already)."""
    x0, y0, x1, y1 = box
    h, w = img.shape[-2:]
    left, top = min(int(x0), w - 1), min(int(y0), h - 1)
    right, bottom = max(left + 1, min(w, round(x1))), max(top + 1, min(h, round(y1)))
    return img[:, top:bottom, left:right]
