"""Profile a space on a backend: time every op of every layer and the fixed parts, build a LUT."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from spnas.errors import SpnasError
from spnas.latency.device_profiler import Protocol, Stats, measure_until_stable
from spnas.latency.fresh_process import measure_onnx_models
from spnas.latency.lut import LatencyTable, lut_from_stats
from spnas.latency.parts import Part, all_parts, export_parts
from spnas.latency.backends import Backend
from spnas.jobs.progress import RoundProgress, bar
from spnas.model.space import SearchSpace


def measure_parts(backend: Backend, parts: list[Part], protocol: Protocol, in_process: bool = False,
                  **stable: Any) -> tuple[dict[str, Stats], dict]:
    """Prepare every part on the backend, then time them all interleaved (one protocol for all) until
    the medians are stable (``stable``: :func:`measure_until_stable`'s ``max_passes`` and ``max_ci``);
    returns the statistics and the conditions (whose warnings are printed).

    On onnxruntime-cpu the parts are exported and timed in a fresh process that loads only numpy and
    onnxruntime (:mod:`spnas.latency.fresh_process`), as a bundle is timed on a device: in this
    process, beside torch, the same networks measured 6-8% slower than in a plain onnxruntime loop
    (``bench/bundle_vs_direct.py``). ``in_process`` keeps the timing here."""
    if backend.name == "onnxruntime-cpu" and not in_process:
        return _measure_in_fresh_process(backend, parts, protocol, **stable)
    runners = {}
    with bar(len(parts), f"preparing {backend.name}", "model") as progress:
        for part in parts:
            runners[part.key] = backend.runner(part.module, part.input_shape)
            progress.update()
    stats, conditions = measure_until_stable(runners, protocol, RoundProgress(f"timing {len(parts)} models"), **stable)
    _print_warnings(conditions)
    return stats, conditions


def _measure_in_fresh_process(backend: Backend, parts: list[Part], protocol: Protocol,
                              **stable: Any) -> tuple[dict[str, Stats], dict]:
    with tempfile.TemporaryDirectory(prefix="spnas-timing-") as tmp:
        work = Path(tmp)
        models = {key: (str(work / m["file"]), m["input_shape"])
                  for key, m in export_parts(parts, backend.format, work).items()}
        print(f"timing {len(parts)} models in a fresh process", file=sys.stderr, flush=True)
        stats, conditions = measure_onnx_models(models, None, backend.threads, protocol, work / "timing", **stable)
    _print_warnings(conditions)
    return stats, conditions


def _print_warnings(conditions: dict) -> None:
    for warning in conditions["warnings"]:
        print(f"spnas: warning: {warning}; the timings may be off", file=sys.stderr)


def profile_space(space: SearchSpace, backend: Backend, protocol: Protocol, in_process: bool = False) -> LatencyTable:
    stats, conditions = measure_parts(backend, all_parts(space), protocol, in_process)
    lut = lut_from_stats(space, {k: s.to_dict() for k, s in stats.items()}, backend.info(), protocol.to_dict())
    lut.conditions = conditions
    return lut


def lut_from_bundle_results(results: dict[str, Any], source: str) -> LatencyTable:
    """Turn a bundle's results.json (written on the device) back into a LUT."""
    if not isinstance(results, dict) or not isinstance(results.get("manifest"), dict):
        raise SpnasError(f"{source}: not a bundle results file (expected a JSON object with 'manifest', "
                         "'runtime', 'stats' and 'protocol', as profile_device.py writes it)")
    try:
        manifest = results["manifest"]
        space = SearchSpace.from_dict(manifest["space"], f"{source}: field 'manifest.space'")
        info = {"backend": manifest.get("backend", manifest.get("target", "onnxruntime-device")), "runtime": results["runtime"],
                "runtime_version": results["runtime_version"], "threads": results["threads"],
                "device": results.get("device", {}), "date": results.get("date", ""),
                "precision": manifest.get("precision", "float32"), "quantization": manifest.get("quantization", {})}
        stats, protocol = results["stats"], results["protocol"]
    except KeyError as err:
        raise SpnasError(f"{source}: not a bundle results file (field {err} is missing)") from None
    if space.fingerprint() != manifest.get("space_fingerprint"):
        raise SpnasError(f"{source}: field 'space_fingerprint' does not match the space it describes")
    lut = lut_from_stats(space, stats, info, protocol)
    lut.conditions = dict(results.get("conditions", {}))
    return lut

