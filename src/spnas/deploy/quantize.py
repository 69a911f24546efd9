"""INT8 models as phones, boards and CPUs run them: static post-training quantization with onnxruntime's
tools (QDQ format, per-channel int8 weights, uint8 activations, min-max calibration on real images).

Every INT8 model spnas makes goes through :func:`quantize`: the latency table's layers, the whole networks
that validate it, and the exported models (``spnas export --int8``), so what is timed is what ships.

Calibration needs inputs as each model sees them. A whole network's are images. A layer's are the
activations that reach its position; :class:`ActivationSamples` runs the calibration images through a
reference network of the space (every layer k3e3) once and keeps the activations at every shape a part
can have (a layer's input shape does not depend on the ops chosen before it).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spnas.errors import SpnasError

PRECISIONS = ("float32", "int8")
#: how spnas quantizes, recorded in every INT8 latency table
SCHEME = {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8", "calibration": "min-max"}


def saturates() -> bool:
    """Whether this CPU's onnxruntime multiplies uint8 by int8 with AVX2's VPMADDUBSW, whose int16 pair sums
    saturate (x86-64 without VNNI): then weights keep 7 bits (``reduce_range``), as onnxruntime advises.
    Measured here (an AVX2 EPYC): a small net's INT8 logits were off by 43% of their spread with 8-bit
    weights and 22% with 7-bit ones."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx2" in flags and "vnni" not in flags


def quantize(model: bytes, samples: list[np.ndarray], reduce_range: bool | None = None) -> bytes:
    """The INT8 (QDQ) form of an ONNX model with one input named 'input', calibrated on ``samples``;
    ``reduce_range`` (7-bit weights) defaults to :func:`saturates`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not samples:
        raise SpnasError("INT8 quantization needs calibration samples")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rest = iter(samples)

        def get_next(self):
            x = next(self.rest, None)
            return None if x is None else {"input": np.ascontiguousarray(x, dtype=np.float32)}

    with tempfile.TemporaryDirectory() as tmp:
        plain, prepared, quantized = (Path(tmp) / name for name in ("f.onnx", "p.onnx", "q.onnx"))
        plain.write_bytes(model)
        try:
            quant_pre_process(str(plain), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            reduce_range=saturates() if reduce_range is None else reduce_range)
        except Exception as err:  # onnxruntime raises many kinds; one line says which model and why
            raise SpnasError(f"INT8 quantization failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        return quantized.read_bytes()


@dataclass
class ActivationSamples:
    """Calibration inputs by shape: the images, and the activations a reference network of the space
    passes to each layer position and to the head (batch 1 each)."""

    by_shape: dict[tuple[int, ...], list[np.ndarray]] = field(default_factory=dict)
    #: where the images came from (recorded in INT8 tables)
    source: str = ""

    @classmethod
    @torch.no_grad()
    def from_images(cls, space, images: torch.Tensor, source: str) -> "ActivationSamples":
        """``images``: (N, C, H, W) float, normalised as the network sees them."""
        from spnas.model.arch import uniform
        from spnas.nn.network import SinglePathNet

        expected = (space.in_channels, space.input_size, space.input_size)
        if tuple(images.shape[1:]) != expected:
            raise SpnasError(f"calibration images from {source} are {tuple(images.shape[1:])} (C, H, W), the space "
                             f"needs {expected}; give --calibration-data with images of the space's input")
        torch.manual_seed(0)
        net = SinglePathNet(space, uniform(space, "k3e3")).eval()
        by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}

        def keep(x: torch.Tensor) -> None:
            shape = (1, *x.shape[1:])
            if shape not in by_shape:
                by_shape[shape] = [row[None].numpy().astype(np.float32) for row in x]

        handles = [layer.register_forward_pre_hook(lambda m, args: keep(args[0])) for layer in net.layers]
        handles.append(net.blocks_after.register_forward_pre_hook(lambda m, args: keep(args[0])))
        try:
            keep(images.float())
            net(images.float())
        finally:
            for h in handles:
                h.remove()
        return cls(by_shape, source)

    def samples(self, input_shape) -> list[np.ndarray]:
        """The inputs of that shape; a shape no layer position has (the runtime's bare overhead model) gets
        standard normal ones."""
        shape = tuple(input_shape)
        if shape in self.by_shape:
            return self.by_shape[shape]
        count = len(next(iter(self.by_shape.values()))) if self.by_shape else 8
        rng = np.random.default_rng(0)
        return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def calibration_images(data, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` training images of ``data`` as the network sees them (normalised, no augmentation),
    chosen by ``seed``."""
    from spnas.data.datasets import TensorSplit
    from spnas.data.loader import eval_source

    if count < 1:
        raise SpnasError(f"INT8 calibration needs at least 1 image, got {count}")
    from spnas.data.datasets import DecodedFolderSplit

    count = min(count, len(data.train))
    index = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:count]
    split = data.train.subset(index)
    if isinstance(split, DecodedFolderSplit):  # held at size / 0.875: evaluation's centre crop of it
        s, size = split.images.shape[-1], split.output_size
        top = (s - size) // 2
        split = TensorSplit(split.images[..., top:top + size, top:top + size].contiguous(), split.labels)
    source = eval_source(data, split, batch_size=count)
    return torch.cat([x for x, _ in source.epoch_batches(0)])[:count].cpu()


#: training images that calibrate an INT8 model unless told otherwise
CALIBRATION_IMAGES = 256


@dataclass
class ModelFormat:
    """What an ONNX model spnas times or ships is: float32, or INT8 quantized as :data:`SCHEME` says with
    activations calibrated on ``samples``."""

    precision: str = "float32"
    samples: ActivationSamples | None = None
    #: where the calibration images came from: {"data", "data_dir", "images"}
    calibration: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SpnasError(f"--precision must be one of: {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "int8" and self.samples is None:
            raise SpnasError("an INT8 model needs calibration images (--calibration-data)")

    def onnx(self, module: torch.nn.Module, input_shape: list[int]) -> bytes:
        from spnas.deploy.onnx_io import onnx_bytes

        model = onnx_bytes(module, input_shape)
        return model if self.precision == "float32" else quantize(model, self.samples.samples(input_shape))

    def describe(self) -> dict:
        """What a latency table records of it."""
        if self.precision == "float32":
            return {"precision": "float32"}
        return {"precision": "int8", "quantization": {**SCHEME, "reduce_range": saturates(),
                                                      "calibration_data": dict(self.calibration)}}


def int8_format(space, data: str, data_dir: str | None, images: int = CALIBRATION_IMAGES) -> ModelFormat:
    """The INT8 format calibrated on ``images`` training images of dataset ``data`` (loaded without a
    validation split, the first ``images`` of a seeded order: the same images wherever it is rebuilt)."""
    from spnas.data.datasets import load_data

    loaded = load_data(data, data_dir, val_fraction=0.0, seed=0)
    samples = ActivationSamples.from_images(space, calibration_images(loaded, images), data)
    return ModelFormat("int8", samples, {"data": data, "data_dir": data_dir, "images": images})


def format_of_table(lut, space, data_dir: str | None = None) -> ModelFormat:
    """The format a latency table's entries were timed in, rebuilt to time more models alike (an INT8
    table's calibration images come from the dataset it names; ``data_dir`` overrides where it is)."""
    if getattr(lut, "precision", "float32") == "float32":
        return ModelFormat()
    source = (lut.quantization or {}).get("calibration_data") or {}
    if not source.get("data"):
        raise SpnasError("this INT8 table does not say which images calibrated it; profile it again")
    return int8_format(space, source["data"], data_dir or source.get("data_dir"), int(source.get("images",
                                                                                                  CALIBRATION_IMAGES)))
