"""Time exported ONNX models in a fresh Python process that loads nothing of spnas or torch.

Why: the process that trained and exported the models holds torch's thread pools, gigabytes of
allocator caches and possibly DataLoader workers; timing there measured 9-14% high here. The
standalone bundle profiler (``device_profiler.py``, numpy + onnxruntime only) runs in ``python -I``
with a manifest of the models, as it would on a device, and records the measurement's conditions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spnas.errors import SpnasError
from spnas.outputs.files import read_json, write_json
from spnas.latency import device_profiler
from spnas.latency.device_profiler import Protocol, Stats


def measure_onnx_models(models: dict[str, str], input_shape: list[int], threads: int, protocol: Protocol,
                        workdir: Path) -> tuple[dict[str, Stats], dict]:
    """Median timings of ``models`` (name -> ONNX file) and the conditions they were taken under."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_json(workdir / "manifest.json", {
        "format": "spnas-bundle/1", "backend": "onnxruntime-cpu",
        "models": {name: {"file": str(Path(path).absolute()), "input_shape": input_shape} for name, path in models.items()}})
    results = workdir / "results.json"
    command = [sys.executable, "-I", device_profiler.__file__, "--bundle", str(workdir), "--threads", str(threads),
               "--warmup", str(protocol.warmup), "--repeats", str(protocol.repeats), "--cache", protocol.cache,
               "--burst", str(protocol.burst), "--out", str(results), "--no-warnings"]
    done = subprocess.run(command, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SpnasError(f"timing the exported models in a fresh process failed (exit {done.returncode}; its "
                         f"lines are above): {' '.join(command)}")
    data = read_json(results, "timing results")
    stats = {name: Stats.from_dict(s) for name, s in data["stats"].items()}
    return stats, data.get("conditions", {})
