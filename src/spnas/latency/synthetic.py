"""A latency table with a plausible structure and nothing measured: for tests and benchmarks that need a
table whose values move a search (k5 costs more than k3, e6 more than e3, wider and larger layers more),
without profiling a machine first."""

from __future__ import annotations

from spnas.latency.lut import LatencyTable, lut_from_stats
from spnas.latency.parts import layer_key
from spnas.model.space import SearchSpace

#: each op's cost relative to k3e3
RELATIVE_COST = {"k3e3": 1.0, "k3e6": 1.8, "k5e3": 1.3, "k5e6": 2.4}


def synthetic_table(space: SearchSpace, base: float = 0.1) -> LatencyTable:
    """Entries of ``base`` x the op's relative cost x the layer's width and area (plus 0.01 ms each)."""
    stats = {"overhead": {"median": 0.01, "iqr": 0.0}, "prefix": {"median": 0.2, "iqr": 0.0},
             "suffix": {"median": 0.3, "iqr": 0.0}}
    for l in space.layers():
        for op, c in RELATIVE_COST.items():
            ms = base * c * (l.out_channels / 16) * (l.input_size / 8) ** 2 / 4 + 0.01
            stats[layer_key(l.index, op)] = {"median": ms, "iqr": 0.0}
    info = {"backend": "onnxruntime-cpu", "runtime": "onnxruntime", "runtime_version": "test", "threads": 1}
    return lut_from_stats(space, stats, info, {"repeats": 0})
