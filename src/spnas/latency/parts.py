"""The pieces of a network that a LUT times separately: each op of each layer, and the fixed parts.

Keys: ``L{i}/{op}`` for searchable layer i, ``prefix`` (stem + fixed blocks before the stages),
``suffix`` (fixed blocks after, head, pooling, classifier) and ``overhead`` (an almost empty model:
the runtime's per-call cost, which every separately timed part pays once but a whole network pays
only once in total, so it is subtracted from each part and added back once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spnas.deploy.quantize import ModelFormat
from spnas.jobs.progress import bar
from spnas.model.arch import uniform
from spnas.outputs.files import atomic_path
from spnas.nn.blocks import MBConv
from spnas.nn.network import SinglePathNet
from spnas.model.space import MBCONV_OPS, SearchSpace, op_kernel_expand


@dataclass
class Part:
    key: str
    module: nn.Module
    input_shape: list[int]


class _Overhead(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0


class _Suffix(nn.Module):
    def __init__(self, net: SinglePathNet) -> None:
        super().__init__()
        self.blocks_after, self.head, self.pool, self.classifier = (
            net.blocks_after, net.head, net.pool, net.classifier)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.head(self.blocks_after(x))).flatten(1))


def layer_key(index: int, op: str) -> str:
    return f"L{index}/{op}"


def fixed_parts(space: SearchSpace) -> list[Part]:
    net = SinglePathNet(space, uniform(space, "k3e3")).eval()
    last = space.layers()[-1]
    last_size = -(-last.input_size // last.stride)
    return [
        Part("overhead", _Overhead(), [1, 1, 1, 1]),
        Part("prefix", nn.Sequential(net.stem, net.blocks_before),
             [1, space.in_channels, space.input_size, space.input_size]),
        Part("suffix", _Suffix(net), [1, last.out_channels, last_size, last_size]),
    ]


def layer_parts(space: SearchSpace) -> list[Part]:
    parts = []
    for spec in space.layers():
        for op in MBCONV_OPS:
            k, e = op_kernel_expand(op)
            block = MBConv(spec.in_channels, spec.out_channels, spec.stride, k, e, space.bn_eps).eval()
            parts.append(Part(layer_key(spec.index, op), block,
                              [1, spec.in_channels, spec.input_size, spec.input_size]))
    return parts


def all_parts(space: SearchSpace) -> list[Part]:
    return fixed_parts(space) + layer_parts(space)


def export_parts(parts: list[Part], fmt: ModelFormat, directory: Path) -> dict[str, dict]:
    """Each part as an ONNX file in ``fmt`` under ``directory``/models/, with a progress bar; returns a
    bundle manifest's ``models``: key -> {"file": the path under ``directory``, "input_shape": ...}. What a
    bundle holds and what the fresh process that times a table here reads."""
    (directory / "models").mkdir(parents=True, exist_ok=True)
    models = {}
    with bar(len(parts), "exporting ONNX", "model") as progress:
        for part in parts:
            name = f"models/{part.key.replace('/', '_')}.onnx"
            with atomic_path(directory / name) as tmp:
                tmp.write_bytes(fmt.onnx(part.module, part.input_shape))
            models[part.key] = {"file": name, "input_shape": list(part.input_shape)}
            progress.update()
    return models
