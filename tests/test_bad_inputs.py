"""Bad input, as a new user types it: every case exits 2 with exactly one ``spnas: error:`` line, no
traceback, and leaves the file system as it was (nothing created, nothing deleted, nothing changed).

Cases run in-process through ``spnas.cli.main.main`` (a traceback would surface as an exception and
fail the case); ``{w}`` in an argument is the shared directory of prepared files, ``{cwd}`` the
current directory of the case, which holds one file of the user's; ``~`` and ``{home}`` a home
directory with a file of its own.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as pil_image

from conftest import fake_lut
from spnas.cli.main import main
from spnas.jobs.engine import Interrupted
from spnas.jobs.rundir import LOCK
from spnas.search.config import SearchConfig
from spnas.search.loop import run_search
from spnas.model.space import get_space
from spnas.train.config import TrainConfig
from spnas.train.loop import run_train

DATA = "synthetic:64:1:16:4"
TINY = ["--data", DATA, "--width", "0.25", "--epochs", "1", "--batch-size", "16"]
ARCH = "uniform-k3e3"
SMALL16 = dict(width=0.25, input_size=16, num_classes=4)


def _idx(path: Path, array: np.ndarray, magic_type: int = 0x08) -> None:
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _idx_set(directory: Path, images: np.ndarray, labels: np.ndarray) -> None:
    directory.mkdir(parents=True)
    for prefix in ("train", "t10k"):
        _idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        _idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)


def _lut_variant(world: Path, name: str, change) -> None:
    data = json.loads((world / "lut.json").read_text())
    change(data)
    (world / name).write_text(json.dumps(data))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Every file the cases point at, made once; each case checks it leaves them unchanged."""
    w = tmp_path_factory.mktemp("world")
    space = get_space("small", **SMALL16)
    fake_lut(space).save(w / "lut.json")
    fake_lut(get_space("small", width=0.5, input_size=16, num_classes=4)).save(w / "lut_other_space.json")
    for name, change in {
        "lut_neg.json": lambda d: d["layers"][0].update(k3e3=-1.0),
        "lut_str.json": lambda d: d["layers"][1].update(k5e6="fast"),
        "lut_nolayers.json": lambda d: d.pop("layers"),
        "lut_format.json": lambda d: d.update(format="tflite"),
        "lut_cal_zero.json": lambda d: d.update(calibration={"a": 0.0, "b": 0.1}),
        "lut_cal_negative.json": lambda d: d.update(calibration={"a": 1.0, "b": -1000.0}),
        # the fastest raw net is fine; an all-5x5 one goes below zero
        "lut_cal_op_term.json": lambda d: d.update(calibration={"a": 1.0, "b": 0.0, "per_k5_layer": -1000.0}),
        "lut_zero.json": lambda d: (d.update(constant_ms=0.0),
                                    [row.update({op: 0.0 for op in row}) for row in d["layers"]]),
        "lut_space_def.json": lambda d: d.update(space_def={**d["space_def"], "stages": "five"}),
        "lut_threads.json": lambda d: d.update(threads="one"),
        "lut_short.json": lambda d: d.update(layers=d["layers"][:3]),
        "lut_overflow.json": lambda d: [row.update(k5e6=1e38) for row in d["layers"]],
    }.items():
        _lut_variant(w, name, change)
    (w / "lut_nan.json").write_text((w / "lut.json").read_text().replace('"k3e3": ', '"k3e3": NaN, "x": ', 1))
    (w / "lut_list.json").write_text("[1, 2]")
    (w / "broken.json").write_text("{not json")
    (w / "arch_ops_str.json").write_text(json.dumps({"space": "small", "ops": "k3e3"}))
    (w / "a_dir.json").mkdir()
    (w / "pixel1_list.json").write_text("[]")
    (w / "pixel1_short.json").write_text(json.dumps({"1": {"0": 1, "1": 2, "2": 3, "3": 4}}))
    (w / "config.yaml").write_text("epochs: ten\n")
    (w / "config_bad.yaml").write_text("epochs: [1\n")
    (w / "config_unknown.json").write_text(json.dumps({"epochz": 1}))
    (w / "config_list.json").write_text("[1]")
    (w / "afile.txt").write_text("a file, not a directory")
    (w / "notmine").mkdir()
    (w / "notmine" / "thesis.tex").write_text("years of work")
    (w / "empty_data").mkdir()
    rng = np.random.default_rng(0)
    _idx_set(w / "idx_labels", rng.integers(0, 255, (20, 8, 8)), np.full(20, 12))
    _idx_set(w / "idx_shape", rng.integers(0, 255, (20, 8, 6)), np.zeros(20))
    _idx_set(w / "idx_count", rng.integers(0, 255, (20, 8, 8)), np.zeros(19))
    (w / "idx_truncated").mkdir()
    for prefix in ("train", "t10k"):
        (w / "idx_truncated" / f"{prefix}-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
        (w / "idx_truncated" / f"{prefix}-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 3]))
    (w / "idx_magic").mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (w / "idx_magic" / stem).write_bytes(b"GIF89a....")
    (w / "cifar_garbage").mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (w / "cifar_garbage" / name).write_bytes(b"\x00garbage")
    (w / "cifar_nodata").mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (w / "cifar_nodata" / name).write_bytes(pickle.dumps({b"labels": [0, 1]}))
    for split in ("train", "val"):
        (w / "folder_one" / split / "cat").mkdir(parents=True)
        (w / "folder_one" / split / "cat" / "a.png").write_bytes(b"not a png")
        for cls in ("cat", "dog"):
            (w / "folder_corrupt" / split / cls).mkdir(parents=True)
            (w / "folder_corrupt" / split / cls / "a.jpg").write_bytes(b"not a jpeg")
            (w / "folder_jpeg" / split / cls).mkdir(parents=True)
            for i in range(20):  # a batch of the smoke preset (32) after the validation share
                pil_image.fromarray(np.full((20, 20, 3), 40 * i % 255, np.uint8)).save(
                    w / "folder_jpeg" / split / cls / f"{i}.jpg")

    run_train(TrainConfig(arch=ARCH, data=DATA, width=0.25, epochs=1, batch_size=16, out=str(w / "trained")))
    run_train(TrainConfig(arch="uniform-k5e6", data=DATA, width=0.25, epochs=1, batch_size=16,
                          out=str(w / "trained_k5e6")))
    shutil.copytree(w / "trained", w / "mixed")  # a checkpoint of another architecture
    shutil.copyfile(w / "trained_k5e6" / "checkpoint.pt", w / "mixed" / "checkpoint.pt")
    with pytest.raises(Interrupted):
        run_search(SearchConfig(data=DATA, lut=str(w / "lut.json"), width=0.25, epochs=2, batch_size=16,
                                out=str(w / "search_part"), max_steps=1, eval_every_epoch=False))
    shutil.copytree(w / "trained", w / "foreign_ckpt")  # a search checkpoint in a training run
    shutil.copyfile(w / "search_part" / "checkpoint.pt", w / "foreign_ckpt" / "checkpoint.pt")
    shutil.copytree(w / "trained", w / "torn_ckpt")
    data = (w / "torn_ckpt" / "checkpoint.pt").read_bytes()
    (w / "torn_ckpt" / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    shutil.copytree(w / "trained", w / "corrupt_config")
    (w / "corrupt_config" / "config.json").write_text('{"arch": ')
    shutil.copytree(w / "trained", w / "bad_value_config")
    conf = json.loads((w / "trained" / "config.json").read_text())
    (w / "bad_value_config" / "config.json").write_text(json.dumps({**conf, "lr_per_256": -1}))
    (w / "no_config").mkdir()
    (w / "model_corrupt").mkdir()
    (w / "model_corrupt" / "model.pt").write_bytes(b"PK\x03\x04 torn")
    (w / "pipeline_corrupt").mkdir()
    (w / "pipeline_corrupt" / "pipeline.json").write_text("[]")
    (w / "pipeline_other").mkdir()
    (w / "pipeline_other" / "pipeline.json").write_text(json.dumps({"preset": "full", "data": "fashion-mnist",
                                                                    "stages": {}}))
    (w / "exists.onnx").write_text("a model the user wants to keep")
    (w / "val_out").mkdir()
    (w / "val_out" / "validation.json").write_text("{}")
    for path in w.rglob(LOCK):
        path.unlink()  # the cases must not need to take locks of finished runs
    return w


TRAIN = ["train", ARCH, *TINY]
SEARCH = ["search", "--lut", "{w}/lut.json", *TINY]
LONG = "x" * 300

CASES = {
    # ---------------------------------------------------------------- architectures
    "arch/unknown-op": (["arch", "show", "small:k9e9" + ",k3e3" * 19], "unknown op 'k9e9'"),
    "arch/too-few-layers": (["arch", "show", "small:k3e3,k3e3"], "architecture has 2 layers"),
    "arch/skip-not-allowed": (["arch", "show", "small:skip" + ",k3e3" * 19], "layer 0"),
    "arch/unknown-space": (["arch", "show", "tiny:k3e3"], "unknown search space 'tiny'"),
    "arch/no-space": (["arch", "show", "k3e3,k3e3"], "names no space"),
    "arch/space-mismatch": (["arch", "show", "small:" + ",".join(["k3e3"] * 20), "--space", "imagenet"],
                            "is for space 'small'"),
    "arch/missing-json": (["arch", "show", "{w}/nope.json"], "no such architecture file"),
    "arch/broken-json": (["arch", "show", "{w}/broken.json"], "not valid JSON"),
    "arch/ops-not-list": (["arch", "show", "{w}/arch_ops_str.json"], "must be a list"),
    "arch/json-is-directory": (["arch", "show", "{w}/a_dir.json"], "is a directory"),
    "arch/uniform-unknown-op": ([*TRAIN[:1], "uniform-k9e9", *TINY, "--out", "r"], "'k9e9' is not allowed"),
    "arch/preset-wrong-space": (["arch", "show", "spnas-pixel1", "--space", "small"], "is for space 'imagenet'"),
    "arch/empty": (["train", "", *TINY, "--out", "r"], "no architecture"),
    # ---------------------------------------------------------------- spaces
    "space/unknown": (["space", "show", "bogus"], "unknown search space"),
    "space/width-zero": (["space", "show", "small", "--width", "0"], "--width must be"),
    "space/width-negative": (["space", "show", "small", "--width", "-1"], "--width must be"),
    "space/width-nan": (["space", "show", "small", "--width", "nan"], "--width must be"),
    "space/width-huge": (["space", "show", "small", "--width", "100"], "--width must be"),
    "space/input-size-zero": (["space", "show", "small", "--input-size", "0"], "--input-size must be"),
    "space/input-size-tiny": (["space", "show", "small", "--input-size", "3"], "--input-size must be"),
    "space/in-channels-zero": (["space", "show", "small", "--in-channels", "0"], "--in-channels must be"),
    "space/one-class": (["arch", "show", "uniform-k3e3", "--num-classes", "1"], "--num-classes must be"),
    "space/train-unknown-space": ([*TRAIN, "--space", "bogus", "--out", "r"], "--space must be one of"),
    "space/train-width-zero": ([*TRAIN, "--width", "0", "--out", "r"], "--width must be"),
    # ---------------------------------------------------------------- latency tables
    "lut/missing": (["latency", "predict", ARCH, "--lut", "{w}/nope.json"], "no such LUT file"),
    "lut/not-json": (["latency", "predict", ARCH, "--lut", "{w}/broken.json"], "not valid JSON"),
    "lut/a-list": (["latency", "predict", ARCH, "--lut", "{w}/lut_list.json"], "expected a JSON object"),
    "lut/run-foreign-table-broken": (["run", "--preset", "smoke", "--lut", "{w}/lut_list.json", "--out", "r"],
                                     "expected a JSON object"),
    "lut/is-directory": (["latency", "predict", ARCH, "--lut", "{w}/a_dir.json"], "is a directory"),
    "lut/no-layers": (["latency", "predict", ARCH, "--lut", "{w}/lut_nolayers.json"], "'layers' is missing"),
    "lut/negative-entry": (["latency", "predict", ARCH, "--lut", "{w}/lut_neg.json"], "layers[0].k3e3"),
    "lut/nan-entry": (["latency", "predict", ARCH, "--lut", "{w}/lut_nan.json"], "layers[0].k3e3"),
    "lut/string-entry": (["latency", "predict", ARCH, "--lut", "{w}/lut_str.json"], "layers[1].k5e6"),
    "lut/wrong-format": (["latency", "predict", ARCH, "--lut", "{w}/lut_format.json"], "field 'format'"),
    "lut/calibration-zero-slope": (["latency", "predict", ARCH, "--lut", "{w}/lut_cal_zero.json"], "calibration.a"),
    "lut/calibration-below-zero": (["latency", "predict", ARCH, "--lut", "{w}/lut_cal_negative.json"],
                                   "fastest network"),
    "lut/calibration-op-term-below-zero": (["latency", "predict", ARCH, "--lut", "{w}/lut_cal_op_term.json"],
                                           "fastest network"),
    "lut/all-zero": ([*SEARCH[:2], "{w}/lut_zero.json", *TINY, "--out", "r"], "fastest network"),
    "lut/bad-space-def": (["latency", "predict", ARCH, "--lut", "{w}/lut_space_def.json"], "space_def"),
    "lut/threads-not-int": (["latency", "predict", ARCH, "--lut", "{w}/lut_threads.json"], "field 'threads'"),
    "lut/too-few-layers": (["latency", "predict", ARCH, "--lut", "{w}/lut_short.json"], "has 3 layers"),
    "lut/float32-overflow": ([*SEARCH[:2], "{w}/lut_overflow.json", *TINY, "--out", "r"], "beyond float32"),
    "lut/other-space": ([*SEARCH[:2], "{w}/lut_other_space.json", *TINY, "--out", "r"], "space_fingerprint"),
    "lut/search-without-lut": (["search", *TINY, "--out", "r"], "no latency table"),
    "lut/pixel1-not-object": (["latency", "import-pixel1", "{w}/pixel1_list.json", "--out", "p.json"],
                              "expected an object"),
    "lut/pixel1-missing-entries": (["latency", "import-pixel1", "{w}/pixel1_short.json", "--out", "p.json"],
                                   "entry 2"),
    # ---------------------------------------------------------------- data
    "data/unknown": ([*TRAIN, "--data", "imagenette", "--out", "r"], "unknown dataset"),
    "data/synthetic-not-numbers": ([*TRAIN, "--data", "synthetic:a:b:c:d", "--out", "r"], "bad synthetic spec"),
    "data/synthetic-three-parts": ([*TRAIN, "--data", "synthetic:64:1:16", "--out", "r"], "bad synthetic spec"),
    "data/synthetic-no-images": ([*TRAIN, "--data", "synthetic:0:1:16:4", "--out", "r"], "N must be"),
    "data/synthetic-tiny-images": ([*TRAIN, "--data", "synthetic:64:1:4:4", "--out", "r"], "SIZE must be"),
    "data/synthetic-one-class": ([*TRAIN, "--data", "synthetic:64:1:16:1", "--out", "r"], "CLASSES must be"),
    "data/missing-files": ([*TRAIN, "--data", "fashion-mnist", "--data-dir", "{w}/empty_data", "--out", "r"],
                           "Fashion-MNIST not found"),
    "data/idx-labels-out-of-range": ([*TRAIN, "--data", "mnist", "--data-dir", "{w}/idx_labels", "--out", "r"],
                                     "labels must be in 0..9"),
    "data/idx-not-square": ([*TRAIN, "--data", "mnist", "--data-dir", "{w}/idx_shape", "--out", "r"],
                            "square uint8 images"),
    "data/idx-label-count": ([*TRAIN, "--data", "mnist", "--data-dir", "{w}/idx_count", "--out", "r"],
                             "expected 20 labels"),
    "data/idx-truncated": ([*TRAIN, "--data", "mnist", "--data-dir", "{w}/idx_truncated", "--out", "r"],
                           "truncated IDX"),
    "data/idx-bad-magic": ([*TRAIN, "--data", "mnist", "--data-dir", "{w}/idx_magic", "--out", "r"],
                           "bad magic number"),
    "data/cifar-garbage": ([*TRAIN, "--data", "cifar10", "--data-dir", "{w}/cifar_garbage", "--out", "r"],
                           "not a CIFAR python-pickle batch"),
    "data/cifar-no-data": ([*TRAIN, "--data", "cifar10", "--data-dir", "{w}/cifar_nodata", "--out", "r"],
                           "without 'data'"),
    "data/imagefolder-no-dir": ([*TRAIN, "--data", "imagefolder", "--out", "r"], "needs --data-dir"),
    "data/imagefolder-bad-size": ([*TRAIN, "--data", "imagefolder:big", "--data-dir", "{w}/folder_one", "--out",
                                   "r"], "bad imagefolder spec"),
    "data/imagefolder-one-class": ([*TRAIN, "--data", "imagefolder:32", "--data-dir", "{w}/folder_one", "--out",
                                    "r"], "at least 2"),
    "data/imagefolder-all-corrupt": ([*TRAIN, "--data", "imagefolder:32", "--data-dir", "{w}/folder_corrupt",
                                      "--out", "r"], "no readable images"),
    "data/decode-gpu-without-gpu": ([*TRAIN[:2], "--data", "imagefolder:16:stream", "--data-dir", "{w}/folder_jpeg",
                                     "--width", "0.25", "--batch-size", "8", "--device", "cpu", "--decode", "gpu", "--out", "r"],
                                    "--decode gpu: the job runs on cpu, not on a CUDA GPU"),
    "data/decode-gpu-in-memory": ([*TRAIN, "--decode", "gpu", "--out", "r"], "is held in memory, decoded once"),
    "data/run-decode-gpu-without-gpu": (["run", "--preset", "smoke", "--data", "imagefolder:16:stream", "--data-dir",
                                         "{w}/folder_jpeg", "--device", "cpu", "--decode", "gpu", "--out", "r"],
                                        "--decode gpu: the job runs on cpu"),
    "data/batch-larger-than-data": ([*TRAIN, "--batch-size", "4096", "--out", "r"], "larger than the"),
    "data/val-fraction-one": ([*TRAIN, "--val-fraction", "1", "--out", "r"], "--val-fraction must be"),
    # ---------------------------------------------------------------- numeric options and choices
    "options/lr-negative": ([*TRAIN, "--lr-per-256", "-1", "--out", "r"], "--lr-per-256 must be > 0"),
    "options/lr-zero": ([*SEARCH, "--lr-per-256", "0", "--out", "r"], "--lr-per-256 must be > 0"),
    "options/lr-nan": ([*TRAIN, "--lr-per-256", "nan", "--out", "r"], "--lr-per-256 must be a finite"),
    "options/label-smoothing": ([*TRAIN, "--label-smoothing", "1.5", "--out", "r"], "--label-smoothing must be"),
    "options/log-every-zero": ([*TRAIN, "--log-every", "0", "--out", "r"], "--log-every must be >= 1"),
    "options/target-margin": ([*SEARCH, "--target-margin", "0.7", "--out", "r"], "--target-margin must be"),
    "options/ema-decay-one": ([*TRAIN, "--ema-decay", "1", "--out", "r"], "--ema-decay must be < 1"),
    "options/lr-decay-zero": ([*TRAIN, "--lr-decay", "0", "--out", "r"], "--lr-decay must be > 0"),
    "options/warmup-epochs": ([*TRAIN, "--warmup-epochs", "-1", "--out", "r"], "--warmup-epochs must be"),
    "options/max-steps-zero": ([*TRAIN, "--max-steps", "0", "--out", "r"], "--max-steps must be >= 1"),
    "options/precise-bn-negative": ([*TRAIN, "--precise-bn-batches", "-1", "--out", "r"],
                                    "--precise-bn-batches must be >= 0"),
    "options/train-subset-zero": ([*TRAIN, "--train-subset", "0", "--out", "r"], "--train-subset must be"),
    "options/schedule": ([*TRAIN, "--schedule", "linear", "--out", "r"], "--schedule must be one of"),
    "options/optimizer": ([*SEARCH, "--optimizer", "adam", "--out", "r"], "--optimizer must be one of"),
    "options/epochs-zero": ([*TRAIN, "--epochs", "0", "--out", "r"], "--epochs must be >= 1"),
    "options/batch-zero": ([*SEARCH, "--batch-size", "0", "--out", "r"], "--batch-size must be >= 1"),
    "options/lambda-nan": ([*SEARCH, "--lambda", "nan", "--out", "r"], "--lambda must be a finite"),
    "options/lambda-negative": ([*SEARCH, "--lambda", "-1", "--out", "r"], "--lambda must be >= 0"),
    "options/target-zero": ([*SEARCH, "--target-ms", "0", "--out", "r"], "--target-ms must be > 0"),
    "options/target-inf": ([*SEARCH, "--target-ms", "inf", "--out", "r"], "--target-ms must be a finite"),
    "options/indicator-keep": ([*SEARCH, "--indicator-keep", "0", "--out", "r"], "--indicator-keep must be"),
    "options/warmup-fraction": ([*SEARCH, "--warmup-fraction", "2", "--out", "r"], "--warmup-fraction must be"),
    "options/runtime-formula": ([*SEARCH, "--runtime-formula", "magic", "--out", "r"], "--runtime-formula"),
    "options/recipe": ([*TRAIN, "--recipe", "magic", "--out", "r"], "--recipe must be one of"),
    "options/seed-negative": ([*TRAIN, "--seed", "-3", "--out", "r"], "--seed must be >= 0"),
    "options/threads-zero": ([*TRAIN, "--threads", "0", "--out", "r"], "--threads must be >= 1"),
    "options/amp-fp16-on-cpu": ([*TRAIN, "--device", "cpu", "--amp", "fp16", "--out", "r"],
                                "--amp fp16 needs a CUDA device"),
    "options/amp-unknown": ([*SEARCH, "--amp", "half", "--out", "r"], "--amp must be one of: off, bf16, fp16"),
    "options/device-unknown": ([*TRAIN, "--device", "tpu", "--out", "r"], "--device must be auto"),
    "options/device-garbage": ([*SEARCH, "--device", "cuda:x", "--out", "r"], "--device must be auto"),
    "options/run-amp-fp16-on-cpu": (["run", "--preset", "smoke", "--device", "cpu", "--amp", "fp16", "--out", "r"],
                                    "--amp fp16 needs a CUDA device"),
    "options/checkpoint-minutes-zero": ([*SEARCH, "--checkpoint-minutes", "0", "--out", "r"],
                                        "--checkpoint-minutes must be > 0"),
    "options/not-a-number": ([*TRAIN, "--epochs", "ten", "--out", "r"], "invalid int value"),
    "options/unknown-option": ([*TRAIN, "--epoch", "3", "--out", "r"], "unrecognized arguments"),
    "options/config-missing": ([*TRAIN, "--config", "{w}/nope.yaml", "--out", "r"], "no such config file"),
    "options/config-unparsable": ([*TRAIN, "--config", "{w}/config_bad.yaml", "--out", "r"], "cannot parse config"),
    "options/config-wrong-type": ([*TRAIN[:2], "--config", "{w}/config.yaml", "--data", DATA, "--out", "r"],
                                  "--epochs must be int, got 'ten'"),
    "options/config-unknown-key": ([*TRAIN, "--config", "{w}/config_unknown.json", "--out", "r"],
                                   "unknown key 'epochz'"),
    "options/config-not-mapping": ([*TRAIN, "--config", "{w}/config_list.json", "--out", "r"], "must be a mapping"),
    "options/run-target-negative": (["run", "--preset", "smoke", "--target-ms", "-1", "--out", "r"],
                                    "--target-ms must be"),
    "options/run-threads-zero": (["run", "--preset", "smoke", "--threads", "0", "--out", "r"], "--threads must be"),
    "options/run-unknown-preset": (["run", "--preset", "huge", "--out", "r"], "invalid choice"),
    "options/run-nproc-zero": (["run", "--preset", "smoke", "--nproc-per-node", "0", "--out", "r"],
                               "--nproc-per-node must be >= 1"),
    "options/run-nproc-not-dividing": (["run", "--preset", "smoke", "--nproc-per-node", "3", "--out", "r"],
                                       "--nproc-per-node 3 does not divide the smoke preset's batch of 32"),
    "options/workers-negative": ([*TRAIN, "--workers", "-1", "--out", "r"], "--workers must be >= 0"),
    "options/micro-batch-not-dividing": ([*SEARCH, "--micro-batch", "7", "--out", "r"], "does not divide --batch-size"),
    "options/profile-repeats-zero": (["latency", "profile", "--repeats", "0", "--out", "l.json"],
                                     "--repeats must be >= 1"),
    "options/measure-threads-zero": (["latency", "measure", ARCH, "--threads", "0"], "--threads must be >= 1"),
    "options/validate-few-samples": (["latency", "validate", "--lut", "{w}/lut.json", "--samples", "2", "--out",
                                      "v"], "--samples must be at least 4"),
    # ---------------------------------------------------------------- output paths
    "out/empty": ([*TRAIN, "--out", ""], "--out is empty"),
    "out/empty-force": ([*TRAIN, "--out", "", "--force"], "--out is empty"),
    "out/current-dir-force": ([*TRAIN, "--out", ".", "--force"], "it is the current directory"),
    "out/current-dir-slash-force": ([*TRAIN, "--out", "{cwd}/", "--force"], "it is the current directory"),
    "out/parent-force": ([*TRAIN, "--out", "..", "--force"], "it contains the current directory"),
    "out/root-force": ([*TRAIN, "--out", "/", "--force"], "contains the current directory"),
    "out/home-force": ([*TRAIN, "--out", "~", "--force"], "it is your home directory"),
    "out/home-spelled-out-force": ([*TRAIN, "--out", "{home}", "--force"], "it is your home directory"),
    "out/not-spnas-force": ([*TRAIN, "--out", "{w}/notmine", "--force"], "spnas did not create this directory"),
    "out/not-empty": ([*TRAIN, "--out", "{w}/notmine"], "run directory is not empty"),
    "out/is-a-file": ([*TRAIN, "--out", "{w}/afile.txt"], "exists and is not a directory"),
    "out/under-a-file": ([*TRAIN, "--out", "{w}/afile.txt/run"], "Not a directory"),
    "out/name-too-long": ([*TRAIN, "--out", LONG], "name too long"),
    "out/search-not-spnas-force": ([*SEARCH, "--out", "{w}/notmine", "--force"], "spnas did not create"),
    "out/run-not-spnas-force": (["run", "--preset", "smoke", "--out", "{w}/notmine", "--force"],
                                "spnas did not create"),
    "out/run-current-dir": (["run", "--preset", "smoke", "--out", "."], "it is the current directory"),
    "out/export-exists": (["export", "{w}/trained", "--out", "{w}/exists.onnx"], "exists; pass --force"),
    "out/export-is-directory": (["export", "{w}/trained", "--out", "{w}/notmine"], "is a directory"),
    "out/profile-exists": (["latency", "profile", "--out", "{w}/lut.json"], "exists; pass --force"),
    "out/import-exists": (["latency", "import-pixel1", "{w}/pixel1_short.json", "--out", "{w}/lut.json"],
                          "exists; pass --force"),
    "out/bundle-not-empty": (["latency", "bundle", "--out", "{w}/notmine"], "not empty"),
    "out/bundle-not-spnas-force": (["latency", "bundle", "--out", "{w}/notmine", "--force"], "spnas did not create"),
    "out/validate-exists": (["latency", "validate", "--lut", "{w}/lut.json", "--samples", "4", "--out",
                             "{w}/val_out"], "validation.json: exists"),
    "out/export-no-model": (["export", "{w}/notmine", "--out", "m.onnx"], "no trained model"),
    "out/export-corrupt-model": (["export", "{w}/model_corrupt", "--out", "m.onnx"], "unreadable model file"),
    "out/export-checkpoint": (["export", "{w}/trained/checkpoint.pt", "--out", "m.onnx"],
                              "checkpoint of a train run; give the run directory"),
    # /proc refuses new files even to root (mode bits would not stop a test that runs as root)
    "out/profile-unwritable": (["latency", "profile", "--out", "/proc/spnas-lut.json"], "cannot write in /proc"),
    "out/export-unwritable": (["export", "{w}/trained", "--out", "/proc/m.onnx"], "cannot write in /proc"),
    # ---------------------------------------------------------------- resume and configs
    "resume/missing-dir": (["train", "--resume", "{w}/nope"], "no such run directory"),
    "resume/no-config": (["train", "--resume", "{w}/no_config"], "no such run config"),
    "resume/corrupt-config": (["train", "--resume", "{w}/corrupt_config"], "corrupt run config"),
    "resume/bad-value-config": (["train", "--resume", "{w}/bad_value_config"], "--lr-per-256 must be > 0"),
    "resume/search-dir-as-train": (["train", "--resume", "{w}/search_part"], "unknown key"),
    "resume/foreign-checkpoint": (["train", "--resume", "{w}/foreign_ckpt"], "checkpoint of a search run"),
    "resume/other-architecture": (["train", "--resume", "{w}/mixed"], "does not fit this run's config.json"),
    "resume/torn-checkpoint": (["train", "--resume", "{w}/torn_ckpt"], "unreadable checkpoint"),
    "resume/with-changed-lr": (["train", "--resume", "{w}/trained", "--lr-per-256", "1"],
                               "--lr-per-256 cannot be changed on --resume"),
    "resume/with-arch": (["train", ARCH, "--resume", "{w}/trained"], "ARCH cannot be given with --resume"),
    "resume/with-force": (["train", "--resume", "{w}/trained", "--force"], "--force cannot be given"),
    "resume/with-config": (["search", "--resume", "{w}/search_part", "--config", "{w}/config.yaml"],
                           "--config cannot be given"),
    "resume/search-changed-target": (["search", "--resume", "{w}/search_part", "--target-ms", "1"],
                                     "--target-ms cannot be changed"),
    "resume/pipeline-corrupt": (["run", "--preset", "smoke", "--out", "{w}/pipeline_corrupt"],
                                "corrupt pipeline state"),
    "resume/pipeline-other-preset": (["run", "--preset", "smoke", "--out", "{w}/pipeline_other"],
                                     "holds a run of preset 'full'"),
}


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots``, with size and modification time for files. Lock files and directory
    times aside: a refused resume may have taken and released the run's lock, which is no change to it."""
    seen = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path.name != LOCK:
                st = path.lstat()
                seen[str(path)] = "dir" if path.is_dir() else (st.st_size, st.st_mtime_ns)
    return seen


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(case, world, tmp_path, monkeypatch, capfd):
    argv, expected = CASES[case]
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    (cwd / "precious.txt").write_text("the user's own file")
    monkeypatch.chdir(cwd)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("the user's settings")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SPNAS_CACHE", str(tmp_path / "cache"))
    before = snapshot(world, tmp_path)
    try:
        code = main([a.replace("{w}", str(world)).replace("{cwd}", str(cwd)).replace("{home}", str(home))
                     for a in argv])
    except SystemExit as exit_:  # argparse
        code = exit_.code
    err = capfd.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("spnas: error: "), err
    assert "Traceback" not in err
    assert expected in lines[0], lines[0]
    assert snapshot(world, tmp_path) == before
    assert (cwd / "precious.txt").read_text() == "the user's own file"
    assert (home / ".bashrc").read_text() == "the user's settings"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_refused_before_anything_is_written(device, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert main(["train", ARCH, *TINY, "--device", device, "--out", "r"]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "CUDA is not available here" in err
    assert not (tmp_path / "r").exists()


def test_there_are_at_least_68_cases_in_every_kind():
    kinds = {case.split("/")[0] for case in CASES}
    assert kinds == {"arch", "space", "lut", "data", "options", "out", "resume"}
    assert len(CASES) >= 68


def test_arch_string_longer_than_a_file_name_still_parses(capfd):
    text = "imagenet: " + " , ".join(["k3e3"] * 20) + " " * 300
    assert len(text) > os.pathconf("/", "PC_NAME_MAX")
    assert main(["arch", "show", text, "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["ops"] == ["k3e3"] * 20
