"""Export a trained network to ONNX or TorchScript, checked against PyTorch on real inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from spnas.data.datasets import load_data
from spnas.data.loader import eval_source
from spnas.errors import SpnasError
from spnas.outputs.files import atomic_path
from spnas.deploy.onnx_io import onnx_bytes

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


def _check_close(got: np.ndarray, expected: np.ndarray, fmt: str) -> None:
    diff = float(np.abs(got - expected).max())
    if not diff < TOLERANCE:
        raise SpnasError(f"{fmt} export differs from PyTorch by {diff:.2e} (> {TOLERANCE}); nothing written")
