"""Write a small image folder, as a user's own dataset would be: PNGs of Fashion-MNIST in
ROOT/{train,val}/cN/, ``--train`` and ``--val`` images per class drawn (seed 0) from Fashion-MNIST's
training set. The defaults (155 and 30 per class) make the folder of BENCHMARKS' small-folder run: the
pipeline holds 10% of the 1,550 out for validation, so 1,395 images train, and val/ (300) is the test split.

    python3 bench/small_folder.py /tmp/smallfolder
    spnas run --data imagefolder:28 --data-dir /tmp/smallfolder --out /tmp/sfrun
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from spnas.data.datasets import load_data


def write_folder(root: Path, train_per_class: int, val_per_class: int, data_dir: str | None = None) -> int:
    """The folder under ``root``; returns the number of images written."""
    data = load_data("fashion-mnist", data_dir, 0.0, 0)
    images, labels = data.train.images, data.train.labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    written = 0
    for c in range(len(data.classes)):
        mine = order[labels[order] == c][: train_per_class + val_per_class].tolist()
        for n, i in enumerate(mine):
            split = "train" if n < train_per_class else "val"
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i, 0].numpy()).save(folder / f"{i}.png")
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--train", type=int, default=155, help="training images per class (default 155)")
    parser.add_argument("--val", type=int, default=30, help="test images per class, in val/ (default 30)")
    parser.add_argument("--data-dir", help="where Fashion-MNIST's IDX files are (default: the usual places)")
    args = parser.parse_args()
    print(f"{write_folder(args.root, args.train, args.val, args.data_dir)} images under {args.root}")


if __name__ == "__main__":
    main()
