"""How much of the runtime model's held-out error is the measurement's, and how much is the model's?
(issue 18, item 6)

Two questions, from the validation.csv files of ``spnas latency validate`` runs:
- **retest**: given two or more validations of the *same* nets (the same ``--seed``), the per-net
  disagreement between them after a common scale: the measurement noise of one validation, which
  no calibration can go under;
- **cv**: for each file, repeated random halves (fit on one, score the other, 300 times) of four
  calibration models: affine, a term per present layer of each stage (relative least squares,
  :func:`spnas.latency.validate.fit_calibration` with ``op_terms=False``), that plus two counts
  (present layers with expansion 6, with a 5x5 kernel), and that plus the square of the table's sum:
  what ``validate`` fits today. Each model is also scored on the one split the validation itself
  reported. A mean over many splits, not the one split a single validation reports.

    python3 bench/runtime_models_cv.py retest A/validation.csv B/validation.csv
    python3 bench/runtime_models_cv.py cv A/validation.csv [B/validation.csv ...] [--json OUT]
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
from spnas.latency.validate import fit_calibration  # noqa: E402
from spnas.model.arch import Architecture  # noqa: E402
from spnas.model.space import get_space  # noqa: E402

SPLITS = 300


def read(path: str) -> dict:
    rows = list(csv.DictReader(open(path)))
    archs = [Architecture.from_string(r["arch"]) for r in rows]
    return {"archs": archs, "raw": np.array([float(r["predicted_raw_ms"]) for r in rows]),
            "measured": np.array([float(r["measured_ms"]) for r in rows]),
            "held_out": np.array([r["split"] == "held_out" for r in rows])}


def retest(paths: list[str]) -> dict:
    """Per-net noise of one validation: the spread of log(measured_i / measured_j) over nets, after
    the median ratio (the machine's speed that day) is taken out, divided by sqrt(2)."""
    runs = [read(p) for p in paths]
    if any([a.ops for a in r["archs"]] != [a.ops for a in runs[0]["archs"]] for r in runs):
        raise SystemExit("retest needs validations of the same nets (the same --seed and --samples)")
    out = {}
    for i in range(len(runs)):
        for j in range(i + 1, len(runs)):
            ratio = np.log(runs[j]["measured"] / runs[i]["measured"])
            ratio -= np.median(ratio)
            out[f"{paths[i]} vs {paths[j]}"] = {
                "scale": float(np.exp(np.median(np.log(runs[j]["measured"] / runs[i]["measured"])))),
                "per_net_std_pct": float(ratio.std() * 100),
                "per_measurement_noise_pct": float(ratio.std() / np.sqrt(2) * 100)}
    return out


def cv(path: str, seed: int = 0) -> dict:
    data = read(path)
    archs, raw, measured = data["archs"], data["raw"], data["measured"]
    stages = [layer.stage for layer in get_space(archs[0].space).layers()]
    weights = np.array([op_weights(a.ops) for a in archs])
    n, rng = len(measured), np.random.default_rng(seed)
    scores: dict[str, list[tuple[float, float]]] = {"affine": [], "per_stage": [], "per_stage_e6_k5": [],
                                                    "per_stage_e6_k5_square": []}

    def score(predicted: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
        err = np.abs(predicted[idx] / measured[idx] - 1)
        return float(err.mean() * 100), float((err <= 0.05).mean() * 100)

    def models(cal: np.ndarray) -> dict[str, np.ndarray]:
        w = 1 / measured[cal]
        a, b = np.linalg.lstsq(np.column_stack([raw, np.ones(n)])[cal] * w[:, None], measured[cal] * w, rcond=None)[0]
        return {"affine": a * raw + b,
                "per_stage": fit_calibration(raw[cal], measured[cal], weights[cal], stages, op_terms=False,
                                             curvature=False).apply(raw, weights),
                "per_stage_e6_k5": fit_calibration(raw[cal], measured[cal], weights[cal], stages, curvature=False)
                .apply(raw, weights),
                # what validate fits today: the same terms with the square of the plain sum beside them
                "per_stage_e6_k5_square": fit_calibration(raw[cal], measured[cal], weights[cal], stages)
                .apply(raw, weights)}

    for _ in range(SPLITS):
        idx = rng.permutation(n)
        cal, test = idx[: n // 2], idx[n // 2:]
        for name, predicted in models(cal).items():
            scores[name].append(score(predicted, test))
    # the one split the validation itself reported (its calibration half and held-out half)
    own = {name: score(predicted, np.flatnonzero(data["held_out"]))
           for name, predicted in models(np.flatnonzero(~data["held_out"])).items()}
    return {name: {"mape_pct": float(np.mean([s[0] for s in v])), "within_5pct": float(np.mean([s[1] for s in v])),
                   "bar_met_share": float(np.mean([s[0] <= 2 and s[1] >= 95 for s in v])),
                   "own_split": {"mape_pct": own[name][0], "within_5pct": own[name][1]}}
            for name, v in scores.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("retest", "cv"))
    parser.add_argument("csv", nargs="+", help="validation.csv files")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.what == "retest":
        if len(args.csv) < 2:
            raise SystemExit("retest needs at least two validation.csv files of the same nets")
        report = retest(args.csv)
        for pair, r in report.items():
            print(f"{pair}: scale {r['scale']:.3f}, per-net std {r['per_net_std_pct']:.2f}%, "
                  f"noise of one validation {r['per_measurement_noise_pct']:.2f}%")
    else:
        report = {path: cv(path) for path in args.csv}
        for path, models in report.items():
            print(path)
            for name, m in models.items():
                print(f"  {name:22s} MAPE {m['mape_pct']:.2f}%  within ±5% {m['within_5pct']:.0f}%  "
                      f"bar met in {m['bar_met_share'] * 100:.0f}% of the splits; the validation's own split: "
                      f"MAPE {m['own_split']['mape_pct']:.2f}%, within ±5% {m['own_split']['within_5pct']:.0f}%")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
