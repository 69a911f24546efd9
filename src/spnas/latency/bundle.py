"""Device bundles: per-part ONNX models, whole validation networks, a manifest and a standalone
profiler script for any edge box.

    spnas latency bundle --space small --out bundle/      # here
    python3 profile_device.py --out results.json          # on the device (numpy + onnxruntime only)
    spnas latency profile --from-bundle-results results.json --out lut.json   # back here

Why whole networks too: a table of per-layer timings alone is never checked against what a network
costs on that device (tried on a board-like set-up: 4.5% high on average, 70% of nets within ±5%).
The device times the validation networks (stratified from the smallest to the largest, as
``spnas latency validate`` samples them) interleaved with the layers, and the way back fits the
calibration on half of them and reports the other half.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from spnas.model.arch import Architecture
from spnas.errors import SpnasError
from spnas.latency.device_profiler import Stats
from spnas.latency.lut import LatencyTable
from spnas.outputs.files import atomic_write_text, write_json
from spnas.latency import device_profiler
from spnas.latency.parts import Part, all_parts, export_parts
from spnas.latency.validate import ValidationResult, sample_architectures, validation_report
from spnas.nn.network import SinglePathNet
from spnas.deploy.quantize import ModelFormat
from spnas.model.space import SearchSpace

SCRIPT_NAME = "profile_device.py"

README = """spnas latency bundle for space {space} ({fingerprint})

On the device (Python 3 with numpy and onnxruntime):
    python3 {script} --threads 1 --out results.json
Then, where spnas is installed:
    spnas latency profile --from-bundle-results results.json --out lut.json
"""


#: whole networks in a bundle by default: half calibrate the table, half are held out. 80 as ``spnas latency
#: validate`` and every measurement of BENCHMARKS.md at 061b308, §10: the calibration's full form (5 stage terms, 2 op
#: counts, the square) needs 26 nets to fit (:func:`~spnas.latency.validate.fit_calibration`), and 40 fitted
#: only the stage terms
VALIDATION_NETWORKS = 80
NETWORK_PREFIX = "net/"


def write_bundle(space: SearchSpace, out_dir: Path, backend_name: str = "onnxruntime-device",
                 networks: int = VALIDATION_NETWORKS, seed: int = 0, fmt: ModelFormat | None = None) -> Path:
    """Write the bundle into ``out_dir`` (the caller makes it a fresh, locked run directory); ``fmt``: float32
    models (default) or INT8 ones, so a device's INT8 table is one bundle too."""
    fmt = fmt or ModelFormat()
    out_dir = Path(out_dir)
    archs = sample_architectures(space, networks, seed) if networks else []
    shape = [1, space.in_channels, space.input_size, space.input_size]
    parts = all_parts(space) + [Part(f"{NETWORK_PREFIX}{i}", SinglePathNet(space, arch).eval(), shape)
                                for i, arch in enumerate(archs)]
    models = export_parts(parts, fmt, out_dir)
    shutil.copyfile(device_profiler.__file__, out_dir / SCRIPT_NAME)
    atomic_write_text(out_dir / "README.txt",
                      README.format(space=space.name, fingerprint=space.fingerprint(), script=SCRIPT_NAME))
    manifest = {"format": "spnas-bundle/1", "backend": backend_name, "space": space.to_dict(),
                "space_fingerprint": space.fingerprint(), "models": models,
                "networks": {f"{NETWORK_PREFIX}{i}": arch.to_string() for i, arch in enumerate(archs)},
                "validation": {"seed": seed, "sampling": "stratified"}, **fmt.describe()}
    write_json(out_dir / "manifest.json", manifest)
    return out_dir


def calibrate_from_bundle_results(lut: LatencyTable, results: dict[str, Any], source: str,
                                  out_dir: Path) -> ValidationResult | None:
    """Fit ``lut``'s calibration on the whole networks the device timed, and write the accuracy report
    into ``out_dir`` (as ``spnas latency validate`` does); None for a bundle without networks."""
    networks = results["manifest"].get("networks") or {}
    if not networks:
        return None
    space = lut.search_space(source)
    try:
        archs = [Architecture.from_string(text) for text in networks.values()]
        measured = [Stats.from_dict(results["stats"][key])
                    for key in networks]
    except KeyError as err:
        raise SpnasError(f"{source}: the device's results lack a validation network's timing ({err})") from None
    validation = results["manifest"].get("validation", {})
    info = {"backend": lut.backend, "runtime": lut.runtime, "runtime_version": lut.runtime_version,
            "threads": lut.threads, "device": lut.device}
    result = validation_report(lut, space, archs, measured, int(validation.get("seed", 0)), info, results["protocol"],
                               out_dir, validation.get("sampling", "stratified"), results.get("conditions"))
    lut.calibration = result.calibration
    return result
