"""What the benchmark programs share: a latency table whose values do not change a step's time, and the
JSON file every benchmark writes (what it ran on, and its results)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from spnas.latency.lut import LatencyTable, lut_from_stats
from spnas.latency.parts import layer_key
from spnas.model.space import MBCONV_OPS, SearchSpace


def flat_lut(space: SearchSpace) -> LatencyTable:
    """A table of equal entries: its values do not change the time of a step, only its existence does."""
    stats = {k: {"median": 0.1, "iqr": 0.0} for k in ("overhead", "prefix", "suffix")}
    stats.update({layer_key(l.index, op): {"median": 0.1, "iqr": 0.0} for l in space.layers() for op in MBCONV_OPS})
    info = {"backend": "none", "runtime": "none", "runtime_version": "-", "threads": 1}
    return lut_from_stats(space, stats, info, {})


def machine_meta() -> dict:
    """What the figures were measured on: the CPU model as /proc/cpuinfo names it, torch, threads."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}


def write_results(out: str, results: list, **meta) -> None:
    """The benchmark's JSON: what it ran on (:func:`machine_meta` and ``meta``) and its results."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"meta": {**machine_meta(), **meta}, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
