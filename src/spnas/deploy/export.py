"""Export a trained network to ONNX or TorchScript, checked against PyTorch on real inputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from spnas.data.datasets import load_data
from spnas.data.loader import eval_source
from spnas.errors import SpnasError
from spnas.outputs.files import atomic_path
from spnas.deploy.onnx_io import onnx_bytes
from spnas.deploy.quantize import CALIBRATION_IMAGES, calibration_images, quantize

FORMATS = ("onnx", "torchscript")
TOLERANCE = 1e-4


def reference_inputs(meta: dict, n: int = 64, data_dir: str | None = None) -> torch.Tensor:
    """Real test images, normalised as in training (random ones if the dataset is not at hand)."""
    c, s = meta["space"]["in_channels"], meta["space"]["input_size"]
    try:
        data = load_data(meta["data"]["name"], data_dir, val_fraction=0.0)
        x, _ = next(eval_source(data, data.test, n).epoch_batches(0))
        if tuple(x.shape[1:]) == (c, s, s):
            return x
    except SpnasError:
        pass
    return torch.randn(n, c, s, s, generator=torch.Generator().manual_seed(0))


def export_model(net: torch.nn.Module, meta: dict, fmt: str, out: Path, data_dir: str | None = None) -> dict:
    """Write ``out`` and return the check: max |logit difference| against PyTorch (< 1e-4 or error)."""
    if fmt not in FORMATS:
        raise SpnasError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    space = meta["space"]
    x = reference_inputs(meta, data_dir=data_dir)
    net = net.eval()
    with torch.no_grad():
        expected = net(x).numpy()
    info = {"arch": meta["arch"]["string"], "input_size": space["input_size"],
            "in_channels": space["in_channels"], "mean": meta["data"]["mean"], "std": meta["data"]["std"],
            "classes": meta["data"]["classes"], "dataset": meta["data"]["name"]}
    if fmt == "onnx":
        import onnx
        import onnxruntime as ort

        model = onnx.load_from_string(onnx_bytes(net, [1, *x.shape[1:]], dynamic_batch=True))
        for key, value in info.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))
        blob = model.SerializeToString()
        got = ort.InferenceSession(blob, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
        _check_close(got, expected, fmt)  # before writing: a failed export never replaces a file
        with atomic_path(out) as tmp:
            tmp.write_bytes(blob)
    else:
        traced = torch.jit.trace(net, x[:1])
        with torch.no_grad():
            got = traced(x).numpy()
        _check_close(got, expected, fmt)
        with atomic_path(out) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files={"spnas.json": json.dumps(info)})
    diff = float(np.abs(got - expected).max())
    return {"format": fmt, "path": str(out), "max_abs_diff": diff, "checked_on": int(x.shape[0]), **info}


#: an INT8 model more than this far below its float one (top-1, in points) is flagged
INT8_DROP_POINTS = 1.0


def export_int8(net: torch.nn.Module, meta: dict, out: Path, data_dir: str | None = None,
                images: int = CALIBRATION_IMAGES) -> dict:
    """Write the INT8 ONNX model of a trained net (static post-training quantization, calibrated on ``images``
    training images of its dataset), after checking it runs; return its test top-1 through onnxruntime beside
    the float model's, and a warning where INT8 loses more than :data:`INT8_DROP_POINTS` points."""
    import onnx

    name = meta["data"]["name"]
    try:
        data = load_data(name, data_dir, val_fraction=0.0)
    except SpnasError as err:
        raise SpnasError(f"--int8 calibrates on the model's training data ({name}), which is not at hand: {err}") from None
    # normalised as the model was trained (its split's statistics), for calibration and for both accuracies
    data = dataclasses.replace(data, mean=tuple(meta["data"]["mean"]), std=tuple(meta["data"]["std"]))
    space = meta["space"]
    shape = [1, space["in_channels"], space["input_size"], space["input_size"]]
    samples = [x[None].numpy() for x in calibration_images(data, images)]
    plain = onnx_bytes(net.eval(), shape, dynamic_batch=True)
    model = onnx.load_from_string(quantize(plain, samples))
    info = {"arch": meta["arch"]["string"], "input_size": space["input_size"], "in_channels": space["in_channels"],
            "mean": meta["data"]["mean"], "std": meta["data"]["std"], "classes": meta["data"]["classes"],
            "dataset": name, "precision": "int8", "calibration_images": len(samples)}
    for key, value in info.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))
    blob = model.SerializeToString()
    float_top1, int8_top1, n = onnx_top1(plain, data), onnx_top1(blob, data), len(data.test)
    with atomic_path(out) as tmp:  # it ran on the whole test set: write it
        tmp.write_bytes(blob)
    drop = (float_top1 - int8_top1) * 100
    warning = None
    if drop > INT8_DROP_POINTS:
        warning = (f"INT8 top-1 is {drop:.2f} points below float ({int8_top1 * 100:.2f}% against {float_top1 * 100:.2f}%): "
                   "calibrate on more images (--calibration-images), keep the first and last layers in float, or "
                   "fine-tune with quantization-aware training")
    return {"format": "onnx", "precision": "int8", "path": str(out), "test_top1_float": float_top1,
            "test_top1_int8": int8_top1, "test_images": n, "drop_points": drop, "warning": warning, **info}


def onnx_top1(model: bytes, data, batch_size: int = 500) -> float:
    """Top-1 of an ONNX model (float or INT8) on ``data``'s test split, through onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    correct = seen = 0
    for x, y in eval_source(data, data.test, batch_size).epoch_batches(0):
        logits = session.run(None, {"input": x.cpu().numpy().astype(np.float32)})[0]
        correct += int((logits.argmax(1) == y.cpu().numpy()).sum())
        seen += len(y)
    return correct / max(seen, 1)


def _check_close(got: np.ndarray, expected: np.ndarray, fmt: str) -> None:
    diff = float(np.abs(got - expected).max())
    if not diff < TOLERANCE:
        raise SpnasError(f"{fmt} export differs from PyTorch by {diff:.2e} (> {TOLERANCE}); nothing written")
