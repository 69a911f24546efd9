import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from spnas.data.datasets import load_data
from spnas.data.idx import read_idx
from spnas.data.loader import train_source
from spnas.errors import SpnasError


def write_idx(path, array: np.ndarray, gz: bool):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture
def fake_fashion(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 100), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)), gz=True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)), gz=False)
    return tmp_path


def test_idx_files_raw_and_gz(fake_fashion):
    data = load_data("fashion-mnist", str(fake_fashion), val_fraction=0.1, seed=0)
    assert len(data.train) == 90 and len(data.val) == 10 and len(data.test) == 20
    assert data.train.images.shape[1:] == (1, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.num_classes == 10 and data.flip
    again = load_data("fashion-mnist", str(fake_fashion), val_fraction=0.1, seed=0)
    assert torch.equal(again.val.labels, data.val.labels)


def test_missing_dataset_says_how_to_install(tmp_path):
    with pytest.raises(SpnasError, match="apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist", str(tmp_path))


def test_env_var_sets_directory(fake_fashion, monkeypatch):
    monkeypatch.setenv("SPNAS_DATA_DIR", str(fake_fashion))
    assert len(load_data("fashion-mnist").test) == 20


def test_corrupt_idx(tmp_path):
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(SpnasError, match="bad magic"):
        read_idx(tmp_path / "x")


def test_cifar_pickles(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072)).astype(np.uint8), b"labels": list(range(4))}
        pickle.dump(batch, open(d / name, "wb"))
    data = load_data("cifar10", str(tmp_path), val_fraction=0.0)
    assert data.train.images.shape == (20, 3, 32, 32) and len(data.test) == 4


def test_batches_are_a_function_of_epoch_and_step():
    data = load_data("synthetic:64:1:16:4", val_fraction=0.0)
    a, b = train_source(data, 16, seed=3), train_source(data, 16, seed=3)
    xa, ya = a.batch(1, 2)
    b.batch(0, 0)
    xb, yb = b.batch(1, 2)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a.batch(0, 2)[0], xa)
    # an epoch visits every training image once
    labels = torch.cat([y for _, y in a.epoch_batches(0)])
    assert torch.equal(labels.sort().values, data.train.labels.sort().values)


def test_imagefolder_streams_with_paper_augmentation(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(5):
                PIL.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    data = load_data("imagefolder:32:stream", str(tmp_path), val_fraction=0.2)
    assert data.classes == ("cat", "dog") and data.in_channels == 3 and data.input_size == 32
    assert len(data.train) == 8 and len(data.val) == 2 and len(data.test) == 10
    src = train_source(data, 4, seed=1)
    x, y = src.batch(0, 1)
    assert x.shape == (4, 3, 32, 32) and y.shape == (4,)
    assert torch.equal(train_source(data, 4, seed=1).batch(0, 1)[0], x)  # deterministic per step
    from spnas.data.loader import eval_source

    xe, _ = next(eval_source(data, data.test).epoch_batches(0))
    assert xe.shape == (10, 3, 32, 32)


def _folder(root, channels: int = 3, per_class: int = 6) -> None:
    PIL = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    shape = (40, 60, 3) if channels == 3 else (40, 60)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                PIL.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / split / cls / f"{i}.png")


def test_folder_workers_prefetch_the_same_batches_and_resume_anywhere(tmp_path):
    """DataLoader workers serve exactly what decoding in this process gives, in order, after a jump
    (a resume mid-epoch) and part by part (a process's share of each step)."""
    _folder(tmp_path)
    data = load_data("imagefolder:24:stream", str(tmp_path), val_fraction=0.0)
    inline = train_source(data, 4, seed=3, workers=0)
    workers = train_source(data, 4, seed=3, workers=2)
    expected = {(e, s): inline.batch(e, s) for e in (0, 1) for s in range(inline.steps_per_epoch)}
    for e, s in [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (0, 1)]:  # in order, across an epoch, then jumps
        x, y = workers.batch(e, s)
        assert torch.equal(x, expected[e, s][0]) and torch.equal(y, expected[e, s][1])
    second_half = train_source(data, 4, seed=3, workers=2, parts=2, mine=range(1, 2))
    for s in range(inline.steps_per_epoch):
        first, _ = inline.batch(1, s, 0, 2)
        x, _ = second_half.batch(1, s, 1, 2)
        assert torch.equal(torch.cat([first, x]), expected[1, s][0])


@pytest.mark.parametrize("mode", ["stream", "memory"])
def test_grey_folder_gives_one_channel(tmp_path, mode):
    _folder(tmp_path, channels=1)
    data = load_data(f"imagefolder:24:{mode}", str(tmp_path), val_fraction=0.0)
    assert data.in_channels == 1 and len(data.mean) == 1
    x, _ = train_source(data, 4, seed=0).batch(0, 0)
    assert x.shape == (4, 1, 24, 24)


def test_a_small_folder_is_decoded_once_and_cropped_with_tensor_ops(tmp_path):
    """A folder that fits in memory (the default for small ones) is decoded once: its evaluation images are
    exactly the streamed ones, and its training batches are the paper's augmentation, a pure function of
    (seed, epoch, step) with every image visited once an epoch."""
    from spnas.data.datasets import DecodedFolderSplit
    from spnas.data.imagefolder import FolderImages
    from spnas.data.loader import eval_source

    _folder(tmp_path, per_class=8)
    memory = load_data("imagefolder:24", str(tmp_path), val_fraction=0.25)
    stream = load_data("imagefolder:24:stream", str(tmp_path), val_fraction=0.25)
    assert isinstance(memory.train, DecodedFolderSplit) and memory.train.images.shape == (12, 3, 27, 27)
    assert memory.input_size == 24 and memory.mean == stream.mean
    for split in ("val", "test"):  # the same decoded pixels as the streamed evaluation images
        streamed = FolderImages(getattr(stream, split), 0, augment=False)
        held = getattr(memory, split).images
        assert all(torch.equal(held[i], streamed[(i, 0, 0)][0].permute(2, 0, 1)) for i in range(len(held)))
        assert len(eval_source(memory, getattr(memory, split)).split) == len(held)
    src = train_source(memory, 4, seed=5)
    x, y = src.batch(1, 2)
    assert x.shape == (4, 3, 24, 24) and torch.equal(train_source(memory, 4, seed=5).batch(1, 2)[0], x)
    assert not torch.equal(src.batch(2, 2)[0], x)
    labels = torch.cat([y for _, y in src.epoch_batches(0)])
    assert torch.equal(labels.sort().values, memory.train.labels.sort().values)
    # the crops differ from the centre crop (they are random) but keep its statistics roughly
    centre = src.split.images.float().mean().item() / 255
    assert abs((x * torch.tensor(memory.std).view(1, -1, 1, 1) + torch.tensor(memory.mean).view(1, -1, 1, 1)).mean()
               - centre) < 0.1


def test_resized_crop_draws_stay_inside_the_image_and_flip_half():
    from spnas.data.loader import resized_crop, resized_crop_draws

    w, h, x0, y0, flip = resized_crop_draws(4000, torch.Generator().manual_seed(0))
    assert torch.all((w > 0) & (w <= 1) & (h > 0) & (h <= 1) & (x0 >= 0) & (x0 + w <= 1 + 1e-6) & (y0 + h <= 1 + 1e-6))
    area, aspect = w * h, w / h
    assert area.min() >= 0.08 - 1e-6 and aspect.min() >= 0.75 - 1e-4 and aspect.max() <= 4 / 3 + 1e-4
    assert abs(flip.float().mean().item() - 0.5) < 0.03
    # the whole image unflipped is the image itself; flipped, its mirror
    img = torch.rand(2, 3, 8, 8)
    one, zero = torch.ones(2), torch.zeros(2)
    assert torch.allclose(resized_crop(img, 8, one, one, zero, zero, torch.tensor([False, True])),
                          torch.stack([img[0], img[1].flip(2)]), atol=1e-5)


def test_imagefolder_without_directory_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SPNAS_DATA_DIR", raising=False)
    with pytest.raises(SpnasError, match="imagefolder needs --data-dir"):
        load_data("imagefolder")


def test_jpeg_decoders_and_reduced_decoding_agree(tmp_path, monkeypatch):
    """simplejpeg (where installed) and PIL decode a crop alike, and a crop decoded at a reduced DCT scale
    stays close to the one decoded at full scale."""
    PIL = pytest.importorskip("PIL.Image")
    import spnas.data.decode as decode

    y, x = np.mgrid[0:400, 0:600]
    img = np.stack([np.sin(x / 23), np.cos(y / 17), np.sin((x + y) / 31)], -1) * 100 + 128
    path = tmp_path / "a.jpg"
    PIL.fromarray(img.astype(np.uint8)).save(path, quality=95)
    region = lambda w, h: (0, 0, w, h)  # noqa: E731 - the whole image: 600x400 to 64 px allows a 1/4 scale
    assert decode.reduction((0, 0, 600, 400), 64) == 4 and decode.reduction((0, 0, 100, 100), 64) == 1
    reduced = decode.load_region(path, False, 64, region).astype(float)
    monkeypatch.setattr(decode, "reduction", lambda box, size: 1)
    full = decode.load_region(path, False, 64, region).astype(float)
    assert reduced.shape == full.shape == (64, 64, 3) and np.abs(reduced - full).mean() < 2.0
    if decode.simplejpeg is not None:
        with_simplejpeg = full
        monkeypatch.setattr(decode, "simplejpeg", None)
        assert np.abs(decode.load_region(path, False, 64, region).astype(float) - with_simplejpeg).mean() < 1.0
    flipped = decode.load_region(path, False, 64, region, flip=lambda: True).astype(float)
    assert np.array_equal(flipped, decode.load_region(path, False, 64, region).astype(float)[:, ::-1])
