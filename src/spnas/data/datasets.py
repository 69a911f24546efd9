"""Dataset loading: each loader returns a :class:`DataSplits` of train/val/test tensors or folders.

Small datasets live in memory as uint8 tensors (N, C, H, W): a training step then slices a batch and
augments it with a few tensor ops, no per-sample Python work.
"""

from __future__ import annotations

import os
import pickle
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from spnas.data.idx import find_idx, read_idx
from spnas.data.imagefolder import GREY_MEAN, GREY_STD, IMAGENET_MEAN, IMAGENET_STD, FolderSplit, decode_all, scan
from spnas.errors import SpnasError

DATA_DIR_ENV = "SPNAS_DATA_DIR"

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class TensorSplit:
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.images[index], self.labels[index])


@dataclass
class DecodedFolderSplit(TensorSplit):
    """A folder's training images, decoded once and held as uint8 (N, C, S, S), S = output_size / 0.875 (the
    short side resized to S, its centre square): each batch takes its random-resized crops of them at
    ``output_size`` with tensor ops (:class:`~spnas.data.loader.BatchSource`), on the device."""

    output_size: int = 0

    def subset(self, index: torch.Tensor) -> "DecodedFolderSplit":
        return DecodedFolderSplit(self.images[index], self.labels[index], self.output_size)


@dataclass
class DataSplits:
    name: str
    train: TensorSplit | FolderSplit
    val: TensorSplit | FolderSplit
    test: TensorSplit | FolderSplit
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: horizontal flips keep the label (clothes, objects) or not (digits)
    flip: bool = True
    #: random-crop padding for small images
    crop_padding: int = 2

    @property
    def in_channels(self) -> int:
        return self.train.channels if isinstance(self.train, FolderSplit) else self.train.images.shape[1]

    @property
    def input_size(self) -> int:
        if isinstance(self.train, DecodedFolderSplit):
            return self.train.output_size
        return self.train.input_size if isinstance(self.train, FolderSplit) else self.train.images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def split_train_val(train, val_fraction: float, seed: int):
    """A seeded, stratification-free split of the training set (the test set stays untouched)."""
    if not 0 <= val_fraction < 1:
        raise SpnasError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(len(train) * val_fraction))
    return train.subset(perm[n_val:]), train.subset(perm[:n_val])


def _stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float() / 255
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def _missing(name: str, directory: Path, how: str) -> SpnasError:
    return SpnasError(f"{name} not found in {directory}: {how}; or pass --data-dir DIR (or set {DATA_DIR_ENV})")


def load_idx_dataset(name: str, directory: Path, classes: tuple[str, ...], install_hint: str) -> tuple:
    files, paths = {}, {}
    for key, stem in (("xtr", "train-images-idx3-ubyte"), ("ytr", "train-labels-idx1-ubyte"),
                      ("xte", "t10k-images-idx3-ubyte"), ("yte", "t10k-labels-idx1-ubyte")):
        path = find_idx(directory, stem)
        if path is None:
            raise _missing(name, directory, install_hint)
        files[key], paths[key] = read_idx(path), path
    def split(x: np.ndarray, y: np.ndarray, xkey: str, ykey: str) -> TensorSplit:
        """Images (N, H, H) uint8 and labels (N,) in [0, classes): anything else is named, not loaded."""
        if x.ndim != 3 or x.shape[1] != x.shape[2] or x.dtype != np.uint8 or len(x) == 0:
            raise SpnasError(f"{paths[xkey]}: expected N square uint8 images (N x H x H), got "
                             f"{' x '.join(map(str, x.shape))} {x.dtype}")
        if y.ndim != 1 or len(y) != len(x):
            raise SpnasError(f"{paths[ykey]}: expected {len(x)} labels (one per image), got shape "
                             f"{' x '.join(map(str, y.shape))}")
        if y.min() < 0 or y.max() >= len(classes):
            raise SpnasError(f"{paths[ykey]}: labels must be in 0..{len(classes) - 1}, found {int(y.min())}..{int(y.max())}")
        return TensorSplit(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    return (split(files["xtr"], files["ytr"], "xtr", "ytr"), split(files["xte"], files["yte"], "xte", "yte"),
            classes)


def load_cifar(name: str, directory: Path) -> tuple:
    fine = name == "cifar100"
    sub = "cifar-100-python" if fine else "cifar-10-batches-py"
    root = directory / sub if (directory / sub).is_dir() else directory
    train_files = ["train"] if fine else [f"data_batch_{i}" for i in range(1, 6)]
    test_files = ["test"] if fine else ["test_batch"]
    label_key = b"fine_labels" if fine else b"labels"

    def load(names: list[str]) -> TensorSplit:
        xs, ys = [], []
        for n in names:
            path = root / n
            if not path.is_file():
                raise _missing(name, root, f"expected the python-pickle batches (e.g. {path.name}) "
                               "from https://www.cs.toronto.edu/~kriz/cifar.html")
            x, y = _cifar_batch(path, label_key, len(classes))
            xs.append(x)
            ys.append(y)
        return TensorSplit(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))

    classes = tuple(str(i) for i in range(100)) if fine else CIFAR10_CLASSES
    if fine and (root / "meta").is_file():
        names = _unpickle(root / "meta").get(b"fine_label_names")
        if isinstance(names, list) and len(names) == 100:
            classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in names)
    return load(train_files), load(test_files), classes


def _unpickle(path: Path) -> dict:
    """A CIFAR python-pickle file as a dict, or one line saying why not."""
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
            IndexError, KeyError) as err:
        raise SpnasError(f"{path}: not a CIFAR python-pickle batch ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise SpnasError(f"{path}: not a CIFAR python-pickle batch (no dict inside)")
    return data


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if b"data" not in batch or label_key not in batch:
        raise SpnasError(f"{path}: CIFAR batch without {'data' if b'data' not in batch else label_key.decode()!r}")
    try:
        x = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    except (ValueError, TypeError):
        raise SpnasError(f"{path}: CIFAR data is not N x 3072 bytes") from None
    if len(x) != len(y) or not len(y) or y.min() < 0 or y.max() >= num_classes:
        raise SpnasError(f"{path}: {len(x)} images with {len(y)} labels, expected as many, in 0..{num_classes - 1}")
    return x, y


def load_synthetic(spec: str, seed: int = 0) -> tuple:
    """``synthetic`` or ``synthetic:N:C:S:K`` (images, channels, size, classes): learnable random data.

    Each class has its own mean image, so a network can fit it: tests see the loss go down.
    """
    parts = spec.split(":")[1:]
    usage = f"bad synthetic spec {spec!r}; use synthetic:N:CHANNELS:SIZE:CLASSES"
    try:
        n, c, s, k = (int(p) for p in parts) if parts else (512, 1, 28, 10)
    except ValueError:
        raise SpnasError(usage) from None
    for name, value, low, high in (("N", n, 1, 10_000_000), ("CHANNELS", c, 1, 16), ("SIZE", s, 8, 1024),
                                   ("CLASSES", k, 2, 100_000)):
        if not low <= value <= high:
            raise SpnasError(f"{usage} ({name} must be in {low}..{high}, got {value})")
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(k, c, s, s, generator=g) * 255
    def make(count: int) -> TensorSplit:
        y = torch.randint(0, k, (count,), generator=g)
        x = (protos[y] * 0.5 + torch.rand(count, c, s, s, generator=g) * 127).clamp(0, 255).to(torch.uint8)
        return TensorSplit(x, y)
    return make(n), make(max(n // 5, k)), tuple(str(i) for i in range(k))


def _default_dir(name: str) -> Path:
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path({"fashion-mnist": "/usr/share/datasets/fashion-mnist",
                 "mnist": "/usr/share/datasets/mnist"}.get(name, f"data/{name}"))


LOADERS: dict[str, Callable[[Path], tuple]] = {
    "fashion-mnist": lambda d: load_idx_dataset(
        "Fashion-MNIST", d, FASHION_CLASSES, "install it with 'sudo apt-get install dataset-fashion-mnist'"),
    "mnist": lambda d: load_idx_dataset(
        "MNIST", d, tuple(str(i) for i in range(10)),
        "download the four IDX files from https://yann.lecun.com/exdb/mnist/ into that directory"),
    "cifar10": lambda d: load_cifar("cifar10", d),
    "cifar100": lambda d: load_cifar("cifar100", d),
}
DATASETS = (*LOADERS, "synthetic", "imagefolder")


def load_data(name: str, data_dir: str | None = None, val_fraction: float = 0.1, seed: int = 0,
              train_subset: int | None = None) -> DataSplits:
    """Load ``name`` (see DATASETS); ``train_subset`` keeps a seeded random subset of training images."""
    base = name.split(":")[0]
    directory = Path(data_dir) if data_dir else _default_dir(base)
    if base == "synthetic":
        train, test, classes = load_synthetic(name, seed)
    elif base in LOADERS:
        train, test, classes = LOADERS[base](directory)
    elif base == "imagefolder":
        return _load_imagefolder(name, data_dir, val_fraction, seed, train_subset)
    else:
        raise SpnasError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    train, val = _split_and_subset(train, val_fraction, seed, train_subset)
    mean, std = _stats(train.images)
    return DataSplits(name=name, train=train, val=val, test=test, classes=classes, mean=mean, std=std,
                      # digits must not flip; synthetic class patterns are pixel noise, so no crop/flip either
                      flip=base not in ("mnist", "synthetic"),
                      crop_padding=2 if train.images.shape[-1] <= 32 and base != "synthetic" else 0)


#: a folder whose images, decoded, take at most this many bytes is decoded once and held in memory
IN_MEMORY_BYTES = 2 << 30
FOLDER_MODES = ("auto", "memory", "stream")


def _load_imagefolder(name: str, data_dir: str | None, val_fraction: float, seed: int,
                      train_subset: int | None) -> DataSplits:
    """``imagefolder[:SIZE[:MODE]]`` (SIZE default 224): ROOT/train and ROOT/val class folders. MODE
    ``memory`` decodes every image once and holds them as uint8 tensors (on the job's device), ``stream``
    decodes each batch from disk in worker processes; ``auto`` (the default) holds a folder in memory when
    its decoded images take at most 2 GiB."""
    if not data_dir and not os.environ.get(DATA_DIR_ENV):
        raise SpnasError(f"imagefolder needs --data-dir ROOT (or {DATA_DIR_ENV}) with train/ and val/ inside")
    parts = name.split(":")
    usage = f"bad imagefolder spec {name!r}; use imagefolder[:SIZE[:MODE]], MODE one of {', '.join(FOLDER_MODES)}"
    try:
        size = int(parts[1]) if len(parts) > 1 and parts[1] else 224
    except ValueError:
        raise SpnasError(usage) from None
    mode = parts[2] if len(parts) > 2 else "auto"
    if len(parts) > 3 or mode not in FOLDER_MODES or size < 1:
        raise SpnasError(usage)
    root = Path(data_dir or os.environ[DATA_DIR_ENV])
    train, classes = scan(root, "train", size)
    test, _ = scan(root, "val", size, classes)
    if train.channels != test.channels:  # grey training images, colour test images (or the reverse): RGB
        train, test = (dataclasses.replace(s, channels=3) for s in (train, test))
    train, val = _split_and_subset(train, val_fraction, seed, train_subset)
    grey = train.channels == 1
    stored = round(size / 0.875)
    decoded_bytes = train.channels * ((len(train) + len(val)) * stored ** 2 + len(test) * size ** 2)
    if mode == "memory" or (mode == "auto" and decoded_bytes <= IN_MEMORY_BYTES):
        train = DecodedFolderSplit(decode_all(train, stored, "training images"), train.labels, size)
        val, test = (TensorSplit(decode_all(s, size, f"{what} images"), s.labels)
                     for s, what in ((val, "validation"), (test, "test")))
    return DataSplits(name=name, train=train, val=val, test=test, classes=tuple(classes),
                      mean=GREY_MEAN if grey else IMAGENET_MEAN, std=GREY_STD if grey else IMAGENET_STD,
                      flip=True, crop_padding=0)


def _split_and_subset(train, val_fraction: float, seed: int, train_subset: int | None):
    """The seeded train/validation split, then a seeded random subset of what is left for training."""
    train, val = split_train_val(train, val_fraction, seed)
    if not len(train):
        raise SpnasError(f"no training images left after holding out --val-fraction {val_fraction}")
    return _subset(train, train_subset, seed), val


def _subset(train, train_subset: int | None, seed: int):
    if train_subset is not None and train_subset < len(train):
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))[:train_subset]
        train = train.subset(keep)
    return train


def with_train_subset(data: DataSplits, train_subset: int | None, seed: int) -> DataSplits:
    """What ``load_data(..., seed=seed, train_subset=train_subset)`` gives, from the same data loaded
    without a subset: so one read of the files serves jobs with different subsets."""
    train = _subset(data.train, train_subset, seed)
    if train is data.train:
        return data
    changes = {"train": train}
    # in-memory data is normalised with its training images' statistics (a folder's with ImageNet's)
    if isinstance(train, TensorSplit) and not isinstance(train, DecodedFolderSplit):
        changes["mean"], changes["std"] = _stats(train.images)
    return dataclasses.replace(data, **changes)
