"""The GPU decode path of image folders, run on the CPU with a PIL stand-in for nvJPEG: the same crops,
flips, labels and layout as the workers' path, resumable per step, and chosen only where it can run."""

import io
import json

import numpy as np
import pytest
import torch

import spnas.data.device_decode as device_decode
from spnas.data.datasets import load_data
from spnas.data.device_decode import check_decode, choose_decoder
from spnas.data.imagefolder import FolderBatchSource
from spnas.data.loader import eval_source, train_source
from spnas.errors import SpnasError
from spnas.train.config import TrainConfig

PIL = pytest.importorskip("PIL.Image")


def pil_batch_decoder(files: list[torch.Tensor], grey: bool) -> list[torch.Tensor]:
    """What nvJPEG gives, made by PIL: uint8 (C, H, W) per file."""
    out = []
    for data in files:
        img = PIL.open(io.BytesIO(data.numpy().tobytes())).convert("L" if grey else "RGB")
        pixels = torch.from_numpy(np.array(img))
        out.append(pixels[None] if grey else pixels.permute(2, 0, 1))
    return out


def jpeg_folder(root, per_class: int = 6, size=(120, 90)) -> None:
    """Smooth colour JPEGs (a resampler's differences stay small on them), two classes."""
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    for split in ("train", "val"):
        for c, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                phase = i + 7 * c
                img = np.stack([np.sin(x / (9 + phase)), np.cos(y / (7 + phase)), np.sin((x - y) / 13)], -1) * 90 + 128
                PIL.fromarray(img.astype(np.uint8)).save(root / split / cls / f"{i}.jpg", quality=95)


def test_the_device_path_gives_the_workers_crops_flips_and_labels(tmp_path):
    jpeg_folder(tmp_path)
    data = load_data("imagefolder:32:stream", str(tmp_path), val_fraction=0.0)
    workers = train_source(data, 4, seed=5, decode="cpu")
    on_device = FolderBatchSource(data.train, 4, 5, workers=0, device_decoder=pil_batch_decoder)
    assert on_device.device_decoder is pil_batch_decoder and workers.device_decoder is None
    for epoch, step in [(0, 0), (0, 2), (1, 1)]:
        x, y = workers.batch(epoch, step)
        xd, yd = on_device.batch(epoch, step)
        assert torch.equal(y, yd)
        assert xd.shape == x.shape == (4, 3, 32, 32) and xd.dtype == x.dtype == torch.float32
        assert xd.is_contiguous(memory_format=torch.channels_last)
        # the same box and flip, resampled by another resizer: close (normalised units; a flip or another
        # crop of these patterns differs by far more)
        assert (xd - x).abs().mean() < 0.05, (epoch, step)
        assert (xd - x.flip(-1)).abs().mean() > 0.2
        assert torch.equal(on_device.batch(epoch, step)[0], xd)  # a pure function of (epoch, step): resumable


def test_the_device_path_serves_evaluation_and_grey_folders(tmp_path):
    jpeg_folder(tmp_path, per_class=3)
    for path in tmp_path.rglob("*.jpg"):
        PIL.open(path).convert("L").save(path, quality=95)
    data = load_data("imagefolder:24:stream", str(tmp_path), val_fraction=0.0)
    assert data.in_channels == 1
    plain = next(eval_source(data, data.test, decode="cpu").epoch_batches(0))
    src = FolderBatchSource(data.test, 100, augment=False, drop_last=False, workers=0,
                            device_decoder=pil_batch_decoder)
    x, y = next(src.epoch_batches(0))
    assert torch.equal(y, plain[1]) and x.shape == plain[0].shape == (6, 1, 24, 24)
    assert (x - plain[0]).abs().mean() < 0.05


def test_the_decoder_is_chosen_only_where_it_can_run(tmp_path, monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    jpegs, mixed = [tmp_path / "a.jpg", tmp_path / "b.JPEG"], [tmp_path / "a.jpg", tmp_path / "b.png"]
    stand_in = lambda device: pil_batch_decoder  # noqa: E731 - torchvision with nvJPEG, as on a GPU machine
    monkeypatch.setattr(device_decode, "nvjpeg_decoder", stand_in)
    assert choose_decoder("auto", cuda, jpegs) is pil_batch_decoder
    assert choose_decoder("gpu", cuda, jpegs) is pil_batch_decoder
    assert choose_decoder("cpu", cuda, jpegs) is None
    assert choose_decoder("auto", cpu, jpegs) is None and choose_decoder("auto", cuda, mixed) is None
    with pytest.raises(SpnasError, match="--decode gpu: the job runs on cpu, not on a CUDA GPU"):
        choose_decoder("gpu", cpu, jpegs)
    with pytest.raises(SpnasError, match="files other than JPEGs"):
        choose_decoder("gpu", cuda, mixed)
    monkeypatch.setattr(device_decode, "nvjpeg_decoder", lambda device: None)  # torchvision missing
    assert choose_decoder("auto", cuda, jpegs) is None
    with pytest.raises(SpnasError, match="torchvision"):
        choose_decoder("gpu", cuda, jpegs)
    with pytest.raises(SpnasError, match="--decode must be one of"):
        choose_decoder("nvjpeg", cuda, jpegs)


def test_a_job_says_why_a_gpu_does_not_decode_and_refuses_gpu_for_data_in_memory(tmp_path, monkeypatch, capsys):
    jpeg_folder(tmp_path, per_class=2)
    streamed = load_data("imagefolder:16:stream", str(tmp_path), val_fraction=0.0)
    monkeypatch.setattr(device_decode, "nvjpeg_decoder", lambda device: None)
    check_decode("auto", torch.device("cuda"), streamed)
    assert "decoded by the CPU workers, not on the GPU: torchvision" in capsys.readouterr().err
    check_decode("auto", torch.device("cpu"), streamed)  # no GPU, nothing to say
    assert capsys.readouterr().err == ""
    in_memory = load_data("imagefolder:16:memory", str(tmp_path), val_fraction=0.0)
    check_decode("auto", torch.device("cuda"), in_memory)
    with pytest.raises(SpnasError, match="held in memory"):
        check_decode("gpu", torch.device("cuda"), in_memory)


def test_decode_is_a_setting_that_old_runs_resume_without(tmp_path):
    from spnas.jobs.runs import load_run_config

    assert TrainConfig().decode == "auto"
    with pytest.raises(SpnasError, match="decode"):
        TrainConfig(decode="nvjpeg").check()
    old = {k: v for k, v in TrainConfig(arch="k3e3", out=str(tmp_path)).__dict__.items() if k != "decode"}
    (tmp_path / "config.json").write_text(json.dumps(old))
    # a run made before the setting decoded on the workers: resumed, it still does (bit for bit)
    assert load_run_config(TrainConfig, tmp_path).decode == "cpu"
