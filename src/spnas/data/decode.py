"""Decode one region of an image file straight to the size a batch needs, as cheaply as the file allows.

A training crop of a large JPEG is resized down to ``size`` anyway, so the decoder is asked for the image
at 1/2, 1/4 or 1/8 of its resolution wherever the crop still spans at least ``size`` pixels there: a JPEG
decodes that way in the DCT domain (PIL's ``draft`` mode, simplejpeg's ``min_height``/``min_width``) at a
fraction of the work. simplejpeg (libjpeg-turbo, ``pip install simplejpeg``) decodes JPEGs faster than PIL
where it is installed; other formats, and files simplejpeg refuses, go through PIL. The region is then
resized by PIL: bicubic for evaluation (as before), bilinear for training crops (``fast``).

``bench/data_rate.py`` measures what each of these saves against PIL's own decoding rate.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from spnas.errors import SpnasError

#: a region (x0, y0, x1, y1) of the image in its own pixel coordinates
Box = tuple[float, float, float, float]
#: the DCT-domain reductions a JPEG decoder offers
REDUCTIONS = (8, 4, 2)

try:  # optional: a faster JPEG decoder (libjpeg-turbo)
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None


def pil():
    try:
        from PIL import Image
    except ImportError:
        raise SpnasError("imagefolder needs Pillow: pip install 'spnas[images]'") from None
    return Image


def reduction(box: Box, size: int) -> int:
    """The largest of 8, 4, 2 (else 1) that leaves the region at least ``size`` pixels on each side."""
    w, h = box[2] - box[0], box[3] - box[1]
    return next((r for r in REDUCTIONS if w >= r * size and h >= r * size), 1)


def load_region(path: Path, grey: bool, size: int, region: Callable[[int, int], Box], *, fast: bool = False,
                flip: Callable[[], bool] = lambda: False) -> np.ndarray:
    """The ``region(width, height)`` of the image at ``path``, resized to ``size`` x ``size`` and mirrored where
    ``flip()`` (asked after ``region``): uint8 (H, W, C). ``fast``: bilinear instead of bicubic (training
    crops: torchvision's choice, a third less time per image than bicubic here)."""
    if simplejpeg is not None and path.suffix.lower() in (".jpg", ".jpeg"):
        data = path.read_bytes()
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
            box = region(width, height)
            r = reduction(box, size)
            pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if grey else "RGB",
                                            min_height=math.ceil(height / r), min_width=math.ceil(width / r))
            mode = "L" if grey else "RGB"  # frombuffer shares the decoded pixels (fromarray would copy them)
            img = pil().frombuffer(mode, (pixels.shape[1], pixels.shape[0]), pixels, "raw", mode, 0, 1)
            return _resized(img, box, width, height, size, fast, flip)
        except (ValueError, RuntimeError):  # a JPEG simplejpeg cannot read (CMYK, progressive quirks): PIL's turn
            pass
    img = pil().open(path)
    width, height = img.size
    box = region(width, height)
    r = reduction(box, size)
    if r > 1 and img.format == "JPEG":
        img.draft("L" if grey else "RGB", (math.ceil(width / r), math.ceil(height / r)))
    return _resized(img.convert("L" if grey else "RGB"), box, width, height, size, fast, flip)


def _resized(img, box: Box, width: int, height: int, size: int, fast: bool, flip: Callable[[], bool]) -> np.ndarray:
    """``box`` (in the full-resolution coordinates) of ``img`` (decoded at full or reduced resolution)."""
    sx, sy = img.size[0] / width, img.size[1] / height
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    Image = pil()
    out = img.resize((size, size), Image.Resampling.BILINEAR if fast else Image.Resampling.BICUBIC, box=scaled)
    if flip():
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.array(out, dtype=np.uint8)  # a writable copy
    return pixels[..., None] if pixels.ndim == 2 else pixels
