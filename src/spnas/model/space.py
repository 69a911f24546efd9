"""Search spaces as data.

A space fixes everything the search does not decide (stem, fixed blocks, head, input) and lists the
searchable layers. Networks, latency tables and architectures are all checked against a space's
fingerprint, so a table profiled for one space can never silently be applied to another.
"""

from __future__ import annotations

import math

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from spnas.errors import SpnasError

if TYPE_CHECKING:  # only for the annotation: the space does not depend on how data is loaded
    from spnas.data.datasets import DataSplits

#: Candidate MBConv ops of every searchable layer, in the order of the paper's runtime table.
MBCONV_OPS: tuple[str, ...] = ("k3e3", "k3e6", "k5e3", "k5e6")
SKIP = "skip"


def op_kernel_expand(op: str) -> tuple[int, int]:
    """Decode an op name such as ``k5e3`` into (kernel, expansion): the one place op names are read."""
    if op not in MBCONV_OPS:
        raise SpnasError(f"unknown op {op!r}; allowed: {', '.join(MBCONV_OPS)}")
    return int(op[1]), int(op[3])


def op_name(kernel: int, expand: int) -> str:
    """The op name of (kernel, expansion), e.g. ``k5e3``: the one place op names are written."""
    op = f"k{kernel}e{expand}"
    if op not in MBCONV_OPS:
        raise SpnasError(f"no op with kernel {kernel} and expansion {expand}; ops: {', '.join(MBCONV_OPS)}")
    return op


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channel counts the way MobileNet-family width multipliers do (never below 90%)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@dataclass(frozen=True)
class FixedBlock:
    """An MBConv block that the search never changes (e.g. the first 16-ch and last 320-ch blocks)."""

    out_channels: int
    kernel: int = 3
    expand: int = 1
    stride: int = 1


@dataclass(frozen=True)
class Stage:
    """A run of searchable layers with the same output width; only the first layer strides."""

    out_channels: int
    num_layers: int
    stride: int
    #: indices (within the stage) of layers that may be dropped ("skip")
    skippable: tuple[int, ...] = ()


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer, resolved: its shapes and what it may become."""

    index: int
    stage: int
    in_channels: int
    out_channels: int
    stride: int
    input_size: int
    skippable: bool

    @property
    def candidates(self) -> tuple[str, ...]:
        return MBCONV_OPS + ((SKIP,) if self.skippable else ())


@dataclass(frozen=True)
class SearchSpace:
    name: str
    input_size: int
    in_channels: int
    num_classes: int
    stem_channels: int
    stem_stride: int
    blocks_before: tuple[FixedBlock, ...]
    stages: tuple[Stage, ...]
    blocks_after: tuple[FixedBlock, ...]
    head_channels: int
    dropout: float = 0.2
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01
    width: float = 1.0
    description: str = ""

    # ----------------------------------------------------------------- derived geometry
    def ch(self, channels: int) -> int:
        return channels if self.width == 1.0 else make_divisible(channels * self.width)

    @property
    def stem_out(self) -> int:
        return self.ch(self.stem_channels)

    @property
    def head_out(self) -> int:
        """The head width is absolute: the width multiplier scales the body only."""
        return self.head_channels

    def interchangeable_runs(self) -> list[list[int]]:
        """Maximal runs of consecutive skippable layers in one stage (layer indices).

        Why they matter: a skippable layer has stride 1 and equal in/out channels, so within a run
        every position has the same shapes and candidates; a skip there is an identity, and moving
        it to the run's end (keeping the other ops' order) gives the same network.
        """
        runs: list[list[int]] = []
        previous = None
        for layer in self.layers():
            if layer.skippable and previous is not None and previous.skippable and previous.stage == layer.stage:
                runs[-1].append(layer.index)
            elif layer.skippable:
                runs.append([layer.index])
            previous = layer
        return runs

    def network_count(self) -> tuple[int, int]:
        """(encodings, distinct networks): one op per layer, against networks up to where the skips sit."""
        layers = self.layers()
        encodings = math.prod(len(layer.candidates) for layer in layers)
        distinct = len(MBCONV_OPS) ** sum(not layer.skippable for layer in layers)
        for run in self.interchangeable_runs():  # k ops then len(run) - k skips, k = 0..len(run)
            distinct *= sum(len(MBCONV_OPS) ** k for k in range(len(run) + 1))
        return encodings, distinct

    def layers(self) -> list[LayerSpec]:
        """The searchable layers in order, with their resolved channels and input resolutions."""
        size = _conv_out(self.input_size, self.stem_stride)
        channels = self.stem_out
        for block in self.blocks_before:
            size = _conv_out(size, block.stride)
            channels = self.ch(block.out_channels)
        out: list[LayerSpec] = []
        for s, stage in enumerate(self.stages):
            for i in range(stage.num_layers):
                stride = stage.stride if i == 0 else 1
                out.append(
                    LayerSpec(
                        index=len(out),
                        stage=s,
                        in_channels=channels,
                        out_channels=self.ch(stage.out_channels),
                        stride=stride,
                        input_size=size,
                        skippable=i in stage.skippable,
                    )
                )
                channels = self.ch(stage.out_channels)
                size = _conv_out(size, stride)
        return out

    @property
    def num_layers(self) -> int:
        return sum(stage.num_layers for stage in self.stages)

    def stage_lengths(self) -> list[int]:
        return [stage.num_layers for stage in self.stages]

    def final_size(self) -> int:
        size = _conv_out(self.input_size, self.stem_stride)
        for block in self.blocks_before:
            size = _conv_out(size, block.stride)
        for stage in self.stages:
            size = _conv_out(size, stage.stride)
        for block in self.blocks_after:
            size = _conv_out(size, block.stride)
        return size

    # ----------------------------------------------------------------- identity
    def to_dict(self) -> dict:
        """Plain JSON types (lists, not tuples), so a dict compares equal to its file round trip."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict, source: str = "space definition") -> "SearchSpace":
        """Rebuild a space from its JSON form; a malformed one is one line naming ``source``."""
        try:
            data = dict(data)
            data["blocks_before"] = tuple(FixedBlock(**b) for b in data["blocks_before"])
            data["blocks_after"] = tuple(FixedBlock(**b) for b in data["blocks_after"])
            data["stages"] = tuple(
                Stage(**{**s, "skippable": tuple(s.get("skippable", ()))}) for s in data["stages"]
            )
            space = cls(**data)
            layers = space.layers()
        except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as err:
            raise SpnasError(f"{source}: malformed space definition ({type(err).__name__}: {err})") from None
        numbers = [space.input_size, space.in_channels, space.num_classes, space.head_channels, space.stem_stride,
                   *(l.out_channels for l in layers), *(l.stride for l in layers)]
        if not all(isinstance(n, int) and n >= 1 for n in numbers) or not layers:
            raise SpnasError(f"{source}: malformed space definition (sizes, channels and strides must be "
                             "whole numbers >= 1, with at least one searchable layer)")
        return space

    def fingerprint(self) -> str:
        """A short hash of everything that changes layer shapes (not the name or description)."""
        data = self.to_dict()
        for key in ("name", "description", "dropout", "bn_momentum"):
            data.pop(key)
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_overrides(self, **kwargs) -> "SearchSpace":
        return replace(self, **kwargs)


def _conv_out(size: int, stride: int) -> int:
    """Output size of a 'same'-padded conv: ceil(size / stride)."""
    return -(-size // stride)


def _released_stages(strides: tuple[int, ...]) -> tuple[Stage, ...]:
    """The five searchable stages of the released code: layers 2-4 of every stage may be skipped."""
    widths = (24, 40, 80, 96, 192)
    return tuple(Stage(w, 4, s, skippable=(1, 2, 3)) for w, s in zip(widths, strides))


def imagenet_space(num_classes: int = 1000) -> SearchSpace:
    """SPEC §3: the released ImageNet space (ProxylessNAS-mobile macro-architecture)."""
    return SearchSpace(
        name="imagenet",
        input_size=224,
        in_channels=3,
        num_classes=num_classes,
        stem_channels=32,
        stem_stride=2,
        blocks_before=(FixedBlock(16, kernel=3, expand=1),),
        stages=_released_stages((2, 2, 2, 1, 2)),
        blocks_after=(FixedBlock(320, kernel=3, expand=6),),
        head_channels=1280,
        description="Released Single-Path NAS space: 224x224x3, 20 searchable MBConv layers.",
    )


def small_space(
    input_size: int = 28, in_channels: int = 1, num_classes: int = 10, width: float = 0.5
) -> SearchSpace:
    """The released five stages for 28-32 px inputs (Fashion-MNIST, MNIST, CIFAR).

    The stem does not stride and the stage strides are (2, 2, 2, 1, 1): 28 px goes 28 -> 14 -> 7 -> 4
    and stays 4x4 (32 px: 32 -> 16 -> 8 -> 4) instead of collapsing to 1x1. Striding the first stage
    (rather than keeping 28x28 there) makes a supernet step ~4x cheaper on CPU for the same depth;
    width 0.5 and a 640-channel head keep a search epoch of Fashion-MNIST to minutes on 2 cores
    (measurements: BENCHMARKS.md, bench/space_cost.py).
    """
    return SearchSpace(
        name="small",
        input_size=input_size,
        in_channels=in_channels,
        num_classes=num_classes,
        stem_channels=32,
        stem_stride=1,
        blocks_before=(FixedBlock(16, kernel=3, expand=1),),
        stages=_released_stages((2, 2, 2, 1, 1)),
        blocks_after=(FixedBlock(320, kernel=3, expand=6),),
        head_channels=640,
        width=width,
        description="Released stages for 28-32 px inputs: stem stride 1, stage strides 2,2,2,1,1.",
    )


SPACES = {"imagenet": imagenet_space, "small": small_space}

#: what the data may change in a space: inside these ranges every layer keeps at least one pixel and channel
OVERRIDE_RANGES = {"num_classes": (2, 100_000), "input_size": (8, 1024), "in_channels": (1, 16), "width": (0, 4)}


def get_space(name: str, **overrides) -> SearchSpace:
    """A preset by name; ``overrides`` (num_classes, input_size, in_channels, width) adapt it to data."""
    if name not in SPACES:
        raise SpnasError(f"unknown search space {name!r}; choose one of: {', '.join(SPACES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    for key, value in overrides.items():
        low, high = OVERRIDE_RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                or (key != "width" and value != int(value)) or (key == "width" and value <= 0):
            kind = "a number" if key == "width" else "a whole number"
            raise SpnasError(f"--{key.replace('_', '-')} must be {kind} in {'(' if key == 'width' else '['}{low:g}, "
                             f"{high:g}], got {value!r}")
    base = SPACES[name]()
    return base.with_overrides(**overrides) if overrides else base


def space_for_data(name: str, data: "DataSplits", width: float | None) -> SearchSpace:
    """Preset ``name`` adapted to a dataset's classes, image size and channels (and an optional width)."""
    return get_space(name, num_classes=data.num_classes, input_size=data.input_size,
                     in_channels=data.in_channels, width=width)
