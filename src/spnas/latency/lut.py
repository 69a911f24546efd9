"""The latency lookup table (LUT): per-layer ms of each MBConv op, a constant, and how it was measured."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from spnas.errors import SpnasError
from spnas.outputs.files import read_json, write_json
from spnas.latency.parts import layer_key
from spnas.model.space import MBCONV_OPS, SearchSpace, get_space

LUT_FORMAT = "spnas-lut/1"
#: the search computes latency in float32; a table whose sums overflow it would turn the loss into inf
FLOAT32_MAX = 3.0e38


#: the op features the calibration counts, one column each: a 5x5 kernel, expansion 6 (rows: MBCONV_OPS)
OP_FEATURES = np.array([[op.startswith("k5"), op.endswith("e6")] for op in MBCONV_OPS], dtype=float)


@dataclass
class Calibration:
    """measured ≈ a·predicted + q·predicted² + b + Σ_l c_l·present_l + d_k5·(present 5x5 layers) +
    d_e6·(present e6 layers), fitted on whole networks (predicted: the table's plain sum).

    Why terms for present layers: each layer that is present (not skipped) costs the runtime an
    overhead (an op dispatch, a tensor hand-over) that its profiled entry, timed as a model of its
    own, does not include the same way. An affine fit on mid-range nets alone extrapolates badly to
    shallow ones (most layers skipped): 5-6% off here. One term per present layer helped little
    (BENCHMARKS.md at 061b308, §10); the overhead differs by stage (resolution and width), so the fit gives each
    stage its own term, stored per layer in ``per_present_layer`` (c_l, the layer's stage's). Why the
    two op terms: what is left after those is not noise alone but depends on the ops, too (a whole net
    of e6 layers runs a little faster than its entries sum to); two counts lowered the held-out error
    of every validation measured in §10. Those terms are additive per (layer, op) (:meth:`terms`). Why
    the square: a whole net runs sub-linearly in its layers' summed entries (q < 0 on every validation
    of §10: a big net costs less than its entries sum to, beyond what the counts say), and the curvature
    lowered the held-out error of 8 of 9 of them; the fit covers the space's smallest and largest nets,
    so it is never extrapolated, and loading refuses a q that would make a larger net predict faster
    anywhere in the space. Empty and zero are the plain affine fit. Tables calibrated by earlier
    versions may hold one ``per_layer`` term for all layers instead; loading turns it into the same
    value for every layer.
    """

    a: float = 1.0
    b: float = 0.0
    fitted_on: int = 0
    note: str = ""
    per_present_layer: list[float] = field(default_factory=list)
    #: ms per present layer with a 5x5 kernel, and with expansion 6
    per_k5_layer: float = 0.0
    per_e6_layer: float = 0.0
    #: ms per ms² of the plain sum: the curvature
    q: float = 0.0

    def terms(self, layers: int) -> np.ndarray:
        """(layers, 4): the additive ms of each layer's op, in MBCONV_OPS order (skip adds nothing)."""
        present = np.asarray(self.per_present_layer or [0.0] * layers, dtype=float)[:, None]
        return present + (OP_FEATURES @ [self.per_k5_layer, self.per_e6_layer])[None, :]

    def apply(self, ms, op_weights):
        """``op_weights``: per searchable layer, the weight of each op in MBCONV_OPS order (1 for the
        chosen op of a network, all 0 where it is skipped), shaped (..., layers, 4): a nested list, an
        array with one network per row, or a tensor (a supernet's indicator products, a mixture's
        probabilities), kept differentiable."""
        curve = self.curve(ms)
        if not self.per_present_layer and not self.per_k5_layer and not self.per_e6_layer:
            return curve
        if hasattr(op_weights, "new_tensor"):  # torch (no torch import here)
            extra = (op_weights * self._terms_like(op_weights)).sum((-2, -1))
        else:
            weights = np.asarray(op_weights, dtype=float)
            extra = (weights * self.terms(weights.shape[-2])).sum((-2, -1))
            extra = extra if np.ndim(extra) else float(extra)
        return curve + extra

    def _terms_like(self, op_weights):
        """:meth:`terms` as a tensor on ``op_weights``' device, made once per calibration, device and dtype:
        a search prices its supernet every step, and a copy from the host each time would make a GPU wait."""
        return _terms_tensor(tuple(map(tuple, self.terms(op_weights.shape[-2]).tolist())), op_weights.device,
                             op_weights.dtype)

    def curve(self, ms):
        """The part that depends on the plain sum alone: a·ms + q·ms² + b."""
        return self.a * ms + self.q * ms * ms + self.b

    def slope(self, ms: float) -> float:
        """d(calibrated)/d(plain sum) at ``ms``: how much a millisecond of table entries costs there."""
        return self.a + 2 * self.q * ms


@lru_cache(maxsize=8)
def _terms_tensor(terms: tuple[tuple[float, ...], ...], device, dtype) -> Any:
    """``terms`` as a tensor on ``device``, made once per (terms, device, dtype)."""
    import torch  # only asked for by tensor callers, which have torch loaded already

    return torch.tensor(terms, device=device, dtype=dtype)


def op_weights(ops) -> list[list[float]]:
    """A network's :meth:`Calibration.apply` weights: one-hot rows over MBCONV_OPS, zeros for skip."""
    return [[float(op == o) for o in MBCONV_OPS] for op in ops]


@dataclass
class LatencyTable:
    #: where the table was measured (onnxruntime-cpu, a phone's runtime, ...)
    backend: str
    runtime: str
    runtime_version: str
    threads: int
    space: str
    space_fingerprint: str
    input_size: int
    constant_ms: float
    layers: list[dict[str, float]]
    protocol: dict = field(default_factory=dict)
    date: str = ""
    device: dict = field(default_factory=dict)
    spread: list[dict[str, float]] = field(default_factory=list)
    constant_parts: dict[str, float] = field(default_factory=dict)
    calibration: Calibration | None = None
    #: the full space definition, so a LUT alone can rebuild the network it was measured for
    space_def: dict = field(default_factory=dict)
    #: how steady the machine was while the table was measured (load, a reference kernel, spread, CI)
    conditions: dict = field(default_factory=dict)
    #: float32, or int8: then ``quantization`` says how (deploy.quantize.SCHEME) and which images calibrated it
    precision: str = "float32"
    quantization: dict = field(default_factory=dict)
    format: str = LUT_FORMAT

    def plain_range(self, space: SearchSpace) -> tuple[float, float]:
        """The plain sum's lowest and highest value over ``space``'s networks (each layer's cheapest entry or
        skip, and its dearest entry): where a calibration's curve must rise (:func:`_check_range`)."""
        entries, skip_floor = _entries(self, space)
        return (self.constant_ms + float(np.minimum(entries.min(1), skip_floor).sum()),
                self.constant_ms + float(np.maximum(entries.max(1), 0.0).sum()))

    @property
    def timing_cache(self) -> str:
        """The cache state its entries were timed in; tables written before the protocol recorded it
        were timed cold. Re-measurements that are compared with this table must use the same state."""
        return self.protocol.get("cache", "cold")

    def search_space(self, source: str = "LUT") -> SearchSpace:
        """The space this table was measured for (width, input size, classes included)."""
        if not self.space_def:
            return get_space(self.space)
        return SearchSpace.from_dict(self.space_def, f"{source}: field 'space_def'")

    # ------------------------------------------------------------------ compatibility
    def require_precision(self, precision: str, source: str = "LUT") -> None:
        """Refuse a float32 table where an INT8 one is needed, and the reverse: the op costs differ."""
        if self.precision != precision:
            raise SpnasError(f"{source}: a {self.precision} latency table, but this needs a {precision} one; profile "
                             f"one with 'spnas latency profile --precision {precision}'")

    def check(self, space: SearchSpace, source: str = "LUT") -> None:
        """Refuse a table measured for another space, naming the first field that differs."""
        for name, mine, theirs in (
            ("space", self.space, space.name),
            ("input_size", self.input_size, space.input_size),
            ("space_fingerprint", self.space_fingerprint, space.fingerprint()),
        ):
            if mine != theirs:
                raise SpnasError(
                    f"{source}: field '{name}' is {mine!r} but the network's is {theirs!r}; "
                    f"profile a LUT for this space with 'spnas latency profile --space {space.name}'"
                )
        if len(self.layers) != space.num_layers:
            raise SpnasError(f"{source}: has {len(self.layers)} layers, space has {space.num_layers}")

    # ------------------------------------------------------------------ file form
    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the table, after checking it loads back: a table that every later load would refuse
        (e.g. a calibration fitted to noise with slope <= 0) is never written."""
        data = self.to_dict()
        LatencyTable.from_dict(data, source=f"{path} (not written)")
        write_json(path, data)

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        return cls.from_dict(read_json(path, "LUT file"), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str = "LUT") -> "LatencyTable":
        if not isinstance(data, dict):
            raise SpnasError(f"{source}: corrupt LUT, expected a JSON object")
        if data.get("format") != LUT_FORMAT:
            raise SpnasError(f"{source}: field 'format' is {data.get('format')!r}, expected {LUT_FORMAT!r} "
                             "(convert the paper's table with 'spnas latency import-pixel1')")
        if "backend" not in data and "target" in data:  # tables of older versions
            data = {**data, "backend": data["target"]}
        required = ("backend", "runtime", "runtime_version", "threads", "space", "space_fingerprint",
                    "input_size", "constant_ms", "layers")
        for key in required:
            if key not in data:
                raise SpnasError(f"{source}: incomplete LUT, field '{key}' is missing")
        _check_ms(data["constant_ms"], f"{source}: field 'constant_ms'")
        if not isinstance(data["layers"], list) or not data["layers"]:
            raise SpnasError(f"{source}: field 'layers' must be a non-empty list")
        for i, row in enumerate(data["layers"]):
            if not isinstance(row, dict):
                raise SpnasError(f"{source}: layers[{i}] must be an object of op -> ms")
            for op in MBCONV_OPS:
                if op not in row:
                    raise SpnasError(f"{source}: incomplete LUT, layers[{i}] has no entry for {op!r}")
                _check_ms(row[op], f"{source}: layers[{i}].{op}")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key, kind in (("threads", int), ("input_size", int), ("space", str), ("backend", str)):
            if not isinstance(data[key], kind) or isinstance(data[key], bool):
                raise SpnasError(f"{source}: field '{key}' must be {kind.__name__}, got {data[key]!r}")
        if data.get("precision", "float32") not in ("float32", "int8"):
            raise SpnasError(f"{source}: field 'precision' must be 'float32' or 'int8', got {data['precision']!r}")
        for key, kind in (("protocol", dict), ("device", dict), ("space_def", dict), ("conditions", dict),
                          ("quantization", dict)):
            if key in data and not isinstance(data[key], kind):
                raise SpnasError(f"{source}: field '{key}' must be a JSON object")
        if kwargs.get("calibration") is not None:
            kwargs["calibration"] = _calibration(kwargs["calibration"], len(data["layers"]), source)
        lut = cls(**kwargs)
        _check_range(lut, source)
        return lut


def _calibration(cal: Any, layers: int, source: str) -> Calibration:
    if (not isinstance(cal, dict) or not {"a", "b"} <= set(cal)
            or set(cal) - {"a", "b", "q", "fitted_on", "note", "per_layer", "per_present_layer", "per_k5_layer",
                           "per_e6_layer"}):
        raise SpnasError(f"{source}: field 'calibration' needs numbers 'a' and 'b' (and nothing else but 'q', "
                         "'per_layer', 'per_present_layer', 'per_k5_layer', 'per_e6_layer', 'fitted_on', 'note')")
    for key in ("a", "b", "q", "per_layer", "per_k5_layer", "per_e6_layer"):
        if key in cal:
            _check_number(cal[key], f"{source}: field 'calibration.{key}'")
    terms = cal.get("per_present_layer", [])
    if not isinstance(terms, list):
        raise SpnasError(f"{source}: field 'calibration.per_present_layer' must be a list of numbers, one per layer")
    for i, value in enumerate(terms):
        _check_number(value, f"{source}: field 'calibration.per_present_layer[{i}]'")
    cal = dict(cal)
    one_term = cal.pop("per_layer", 0.0)
    if one_term and not terms:  # an earlier version's one term for all layers
        cal["per_present_layer"] = [float(one_term)] * layers
    return Calibration(**cal)


def _entries(lut: LatencyTable, space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """(layers, 4) entries in MBCONV_OPS order, and each layer's cost when skipped (inf where it cannot be)."""
    return (np.array([[row[op] for op in MBCONV_OPS] for row in lut.layers]),
            np.array([0.0 if spec.skippable else math.inf for spec in space.layers()]))


def _check_range(lut: LatencyTable, source: str) -> None:
    """The table fits its space and predicts positive, float32-sized latencies for every network."""
    space = lut.search_space(source)  # a malformed space definition is refused here, not mid-search
    if len(lut.layers) != space.num_layers:
        raise SpnasError(f"{source}: has {len(lut.layers)} layers, its space has {space.num_layers}")
    if lut.calibration and lut.calibration.per_present_layer and len(lut.calibration.per_present_layer) != space.num_layers:
        raise SpnasError(f"{source}: field 'calibration.per_present_layer' has {len(lut.calibration.per_present_layer)} "
                         f"terms, its space has {space.num_layers} layers")
    entries, skip_floor = _entries(lut, space)
    plain_low, plain_high = lut.plain_range(space)
    cal = lut.calibration or Calibration()
    slopes = sorted((cal.slope(plain_low), cal.slope(plain_high)))
    if lut.calibration and not slopes[0] > 0:
        raise SpnasError(f"{source}: field 'calibration.a' must be > 0 (a larger net must predict slower), got {cal.a}"
                         + (f" (with 'calibration.q' {cal.q:.4g}: a + 2q·ms must be > 0 from {plain_low:.4g} to "
                            f"{plain_high:.4g} ms, the space's range)" if cal.q else ""))
    # the fastest and slowest networks, bounded: over the range the curve rises by at least slopes[0] and at most
    # slopes[1] per ms of entries, and the other terms are additive per (layer, op); exact when q is 0
    terms = cal.terms(space.num_layers)
    base = cal.curve(plain_low) + np.array(slopes) * (lut.constant_ms - plain_low)  # less the entries' own part
    lowest = float(base[0]) + float(np.minimum((slopes[0] * entries + terms).min(1), skip_floor).sum())
    if not lowest > 0:
        raise SpnasError(f"{source}: predicts {lowest:.4g} ms for the fastest network (constant_ms "
                         f"{lut.constant_ms}{', calibration' if lut.calibration else ''}); latencies must be > 0: "
                         "re-profile or re-calibrate the table")
    highest = float(base[1]) + float(np.maximum((slopes[1] * entries + terms).max(1), 0.0).sum())
    if not highest < FLOAT32_MAX:
        raise SpnasError(f"{source}: predicts more than {FLOAT32_MAX:.3g} ms for the slowest network, "
                         "beyond float32; check the table's units")


def space_fields(space: SearchSpace) -> dict:
    """A table's space fields, all written from the one SearchSpace: its definition (what
    :meth:`LatencyTable.search_space` rebuilds) and, for a reader of the file and for
    :meth:`LatencyTable.check`'s messages, its name, fingerprint and input size."""
    return {"space": space.name, "space_fingerprint": space.fingerprint(), "input_size": space.input_size,
            "space_def": space.to_dict()}


def _check_number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpnasError(f"{where} must be a finite number, got {value!r}")


def _check_ms(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise SpnasError(f"{where} must be a finite number of ms >= 0, got {value!r}")


def lut_from_stats(
    space: SearchSpace, stats: Mapping[str, Mapping[str, float]], info: Mapping[str, Any], protocol: dict
) -> LatencyTable:
    """Assemble a LUT from measured part statistics (keys as in :mod:`spnas.latency.parts`)."""
    missing = [k for k in ("overhead", "prefix", "suffix") if k not in stats]
    missing += [layer_key(l.index, op) for l in space.layers() for op in MBCONV_OPS
                if layer_key(l.index, op) not in stats]
    if missing:
        raise SpnasError(f"measurements lack {len(missing)} parts, e.g. {missing[0]!r}: "
                         "were they taken for another space?")
    overhead = stats["overhead"]["median"]

    def net(key: str) -> float:
        return max(stats[key]["median"] - overhead, 0.0)

    parts = {"prefix": net("prefix"), "suffix": net("suffix"), "overhead": overhead}
    return LatencyTable(
        backend=info["backend"], runtime=info["runtime"], runtime_version=info["runtime_version"],
        threads=info["threads"], device=dict(info.get("device", {})),
        **space_fields(space), constant_ms=sum(parts.values()), constant_parts=parts,
        layers=[{op: net(layer_key(l.index, op)) for op in MBCONV_OPS} for l in space.layers()],
        spread=[{op: stats[layer_key(l.index, op)]["iqr"] for op in MBCONV_OPS} for l in space.layers()],
        protocol=dict(protocol), date=info.get("date") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        precision=info.get("precision", "float32"), quantization=dict(info.get("quantization", {})),
    )


#: The released Pixel 1 model's constant for stem, head and the two fixed blocks (SPEC §4).
PIXEL1_CONSTANT_MS = 19.5999


def import_pixel1(path: str | Path, space: SearchSpace) -> LatencyTable:
    """Convert the released table (keys "0".."21", inner "0".."3" = k3e3,k3e6,k5e3,k5e6) to a LUT."""
    raw = read_json(path, "Pixel 1 runtime table")
    if not isinstance(raw, dict):
        raise SpnasError(f"{path}: expected an object with keys '0'..'21'")
    layers = []
    for i in range(1, space.num_layers + 1):
        row = raw.get(str(i))
        if not isinstance(row, dict):
            raise SpnasError(f"{path}: entry {i} (searchable layer {i - 1}) is missing")
        entry = {}
        for j, op in enumerate(MBCONV_OPS):
            if str(j) not in row:
                raise SpnasError(f"{path}: entry {i} has no '{j}' ({op})")
            _check_ms(row[str(j)], f"{path}: entry {i}.{j}")
            entry[op] = float(row[str(j)])
        layers.append(entry)
    return LatencyTable(
        backend="pixel1-tflite", runtime="tflite", runtime_version="released Single-Path NAS model",
        threads=1, **space_fields(space), constant_ms=PIXEL1_CONSTANT_MS, layers=layers,
        protocol={"runs": 50, "source": "Stamoulis et al. 2019, released runtime model"},
        device={"name": "Google Pixel 1", "runtime": "TFLite float, 1 thread"},
        date=time.strftime("%Y-%m-%d"),
    )
