"""ONNX export of a module at a fixed input shape (used by latency targets, bundles and `spnas export`)."""

from __future__ import annotations

import io
import warnings

import torch
from torch import nn


def onnx_bytes(module: nn.Module, input_shape: tuple[int, ...] | list[int], dynamic_batch: bool = False) -> bytes:
    """Serialise ``module`` (eval mode) to ONNX opset 17 with input 'input' and output 'output'.

    The TorchScript exporter is used when present: it is ~10x faster than the dynamo exporter for
    these small static graphs, and profiling exports dozens of them.
    """
    module = module.eval()
    x = torch.zeros(*input_shape)
    buf = io.BytesIO()
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), buf, input_names=["input"], output_names=["output"],
                              opset_version=17, dynamic_axes=axes, dynamo=False)
        except TypeError:  # torch without the `dynamo` switch: the TorchScript exporter is the default
            torch.onnx.export(module, (x,), buf, input_names=["input"], output_names=["output"],
                              opset_version=17, dynamic_axes=axes)
    return buf.getvalue()
