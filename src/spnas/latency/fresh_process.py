"""Time exported ONNX models in a fresh Python process that loads nothing of spnas or torch.

Why: the process that trained and exported the models holds torch's thread pools, gigabytes of
allocator caches and possibly DataLoader workers; timing there measured 9-14% high here. The
layers of a table and the networks of its validation are timed this way too (``spnas latency
profile`` and ``validate`` on onnxruntime-cpu), as a bundle times them on a device, so a table made
here and one made through a bundle on the same machine are measured alike. The
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


def measure_onnx_models(models: dict[str, str | tuple[str, list[int]]], input_shape: list[int] | None, threads: int,
                        protocol: Protocol, workdir: Path, max_passes: int = 3,
                        max_ci: float = device_profiler.MAX_CI) -> tuple[dict[str, Stats], dict]:
    """Median timings of ``models`` (name -> ONNX file, or (file, input shape) where the models' inputs
    differ from ``input_shape``), in passes until every median is known to ±``max_ci`` (up to
    ``max_passes``), and the conditions they were taken under."""
    workdir.mkdir(parents=True, exist_ok=True)
    entries = {name: (m, input_shape) if isinstance(m, (str, Path)) else m for name, m in models.items()}
    write_json(workdir / "manifest.json", {
        "format": "spnas-bundle/1", "backend": "onnxruntime-cpu",
        "models": {name: {"file": str(Path(path).absolute()), "input_shape": list(shape)}
                   for name, (path, shape) in entries.items()}})
    results = workdir / "results.json"
    command = [sys.executable, "-I", device_profiler.__file__, "--bundle", str(workdir), "--threads", str(threads),
               "--warmup", str(protocol.warmup), "--repeats", str(protocol.repeats), "--cache", protocol.cache,
               "--burst", str(protocol.burst), "--seed", str(protocol.seed), "--max-passes", str(max_passes),
               "--max-ci", str(max_ci), "--out", str(results), "--no-warnings"]
    done = subprocess.run(command, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SpnasError(f"timing the exported models in a fresh process failed (exit {done.returncode}; its "
                         f"lines are above): {' '.join(command)}")
    data = read_json(results, "timing results")
    stats = {name: Stats.from_dict(s) for name, s in data["stats"].items()}
    return stats, data.get("conditions", {})
