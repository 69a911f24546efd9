"""Does the calibrated runtime model hold over the whole latency range? (issue 18, item 6)

Reads the validation.csv of a stratified ``spnas latency validate`` run and compares, on the same
held-out half, the calibrations tables have had: affine (measured ≈ a·predicted + b), affine + one
term per present layer, and what ``validate`` fits now (a term per present layer of each stage, least
squares of the relative error): MAPE and share within ±5%, overall and per third of the range, and
on the shallowest nets (most layers skipped).

    spnas latency validate --lut LUT --samples 80 --out bench/results/runtime_range
    python3 bench/runtime_range.py bench/results/runtime_range/validation.csv --out bench/results/runtime_range/compare.json
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from spnas.latency.lut import op_weights  # noqa: E402
from spnas.latency.validate import error_by_range, error_metrics, fit_calibration  # noqa: E402
from spnas.model.arch import Architecture  # noqa: E402
from spnas.model.space import get_space  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="validation.csv of a stratified validation run")
    parser.add_argument("--out", required=True, help="JSON file for the comparison")
    args = parser.parse_args()
    rows = list(csv.DictReader(open(args.csv)))
    raw = np.array([float(r["predicted_raw_ms"]) for r in rows])
    measured = np.array([float(r["measured_ms"]) for r in rows])
    present = np.array([float(r["present_layers"]) for r in rows])
    held = np.array([r["split"] == "held_out" for r in rows])
    cal = ~held
    a, b = np.polyfit(raw[cal], measured[cal], 1)
    affine = a * raw + b
    design = np.stack([raw, np.ones_like(raw), present], axis=1)
    coef, *_ = np.linalg.lstsq(design[cal], measured[cal], rcond=None)
    with_layers = design @ coef
    archs = [Architecture.from_string(r["arch"]) for r in rows]
    stages = [layer.stage for layer in get_space(archs[0].space).layers()]
    weights = np.array([op_weights(a.ops) for a in archs])
    per_stage_fit = fit_calibration(raw[cal], measured[cal], weights[cal], stages, op_terms=False)
    per_stage = per_stage_fit.apply(raw, weights)
    with_ops_fit = fit_calibration(raw[cal], measured[cal], weights[cal], stages)
    with_ops = with_ops_fit.apply(raw, weights)
    shallow = held & (present <= np.percentile(present, 25))
    report = {"nets": len(rows), "held_out": int(held.sum()), "present_layers_range": [int(present.min()), int(present.max())],
              "measured_ms_range": [float(measured.min()), float(measured.max())]}
    models = (("plain_sum", raw), ("affine", affine), ("affine_plus_per_layer", with_layers),
              ("per_stage_relative", per_stage), ("per_stage_and_ops_relative", with_ops))
    for name, pred in models:
        report[name] = {"overall": error_metrics(pred[held], measured[held]),
                        "by_range": error_by_range(pred[held], measured[held]),
                        "shallowest_quarter": error_metrics(pred[shallow], measured[shallow]) if shallow.any() else None}
    report["fits"] = {"affine": [float(a), float(b)], "affine_plus_per_layer": [float(c) for c in coef],
                      "per_stage_relative": per_stage_fit.__dict__, "per_stage_and_ops_relative": with_ops_fit.__dict__}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, _ in models:
        m, s = report[name]["overall"], report[name]["shallowest_quarter"]
        thirds = ", ".join(f"{k.split('_')[0]} {v['mape_pct']:.2f}%" for k, v in report[name]["by_range"].items())
        print(f"{name:22s} MAPE {m['mape_pct']:.2f}%  within ±5% {m['within_5pct'] * 100:.0f}%  ({thirds}); "
              f"shallowest quarter MAPE {s['mape_pct']:.2f}%, mean error {s['mean_error_pct']:+.2f}%" if s else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
