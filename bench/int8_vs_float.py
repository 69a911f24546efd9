"""Float against INT8 at the quick scale, from two `spnas run` directories of the same preset: one
float (`spnas run`), one INT8 (`spnas run --precision int8`).

Writes one JSON and prints markdown: the INT8 table's per-op speed-ups over the float table (float
entry / INT8 entry, per op over the layers), the INT8 table's held-out validation, float and INT8
top-1 and measured ms of every model of the INT8 run, and whether the INT8 table picked another net
than the float table: both searched nets priced on the INT8 table against the INT8 run's target.

    python3 bench/int8_vs_float.py FLOAT_RUN INT8_RUN [--float-int8-top1 X] --out bench/results/int8_vs_float.json

``--float-int8-top1``: the INT8 top-1 of the float run's searched net (`spnas export FLOAT_RUN/train/searched
--int8` prints it), when it was measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.model.arch import Architecture
from spnas.model.space import MBCONV_OPS


def compare(float_run: Path, int8_run: Path, float_int8_top1: float | None) -> dict:
    float_lut, int8_lut = (LatencyTable.load(run / "lut.json") for run in (float_run, int8_run))
    speedups = {op: [f[op] / q[op] for f, q in zip(float_lut.layers, int8_lut.layers)] for op in MBCONV_OPS}
    validation = json.loads((int8_run / "latency" / "validation.json").read_text())
    held = validation["held_out_calibrated"]
    float_results, int8_results = (json.loads((run / "results.json").read_text()) for run in (float_run, int8_run))
    searched = {name: Architecture.from_string(r["search"]["arch"]).canonical()
                for name, r in (("float table", float_results), ("int8 table", int8_results))}
    float_searched = next(m for m in float_results["models"] if m["model"] == "searched")
    return {
        "per_op_speedup": {op: {"median": statistics.median(v), "min": min(v), "max": max(v)} for op, v in speedups.items()},
        "constant_speedup": float_lut.constant_ms / int8_lut.constant_ms,
        "int8_validation": {"mape_pct": held["mape_pct"], "within_5pct": held["within_5pct"], "n": held["n"]},
        "int8_target_ms": int8_results["target_ms"], "float_target_ms": float_results["target_ms"],
        "models": [{k: m.get(k) for k in ("model", "arch", "test_top1", "test_top1_float_onnx", "test_top1_int8",
                                           "int8_drop_points", "measured_ms", "predicted_ms")}
                   for m in int8_results["models"]],
        "searched": {name: {"arch": arch.to_string(), "int8_predicted_ms": predict_ms(int8_lut, arch),
                            "float_predicted_ms": predict_ms(float_lut, arch)} for name, arch in searched.items()},
        "same_net": searched["float table"] == searched["int8 table"],
        "float_searched_float_top1": float_searched["test_top1"], "float_searched_int8_top1": float_int8_top1,
    }


def markdown(r: dict) -> str:
    lines = ["| op | INT8 speed-up over float, median over layers (min–max) |", "| --- | --- |"]
    lines += [f"| {op} | {s['median']:.2f}× ({s['min']:.2f}–{s['max']:.2f}) |" for op, s in r["per_op_speedup"].items()]
    lines += ["", f"INT8 table held out: MAPE {r['int8_validation']['mape_pct']:.2f}%, "
              f"{r['int8_validation']['within_5pct'] * 100:.0f}% of {r['int8_validation']['n']} nets within ±5%.", "",
              "| model | float top-1 % (PyTorch) | float ONNX | INT8 ONNX | drop, points | INT8 measured ms | INT8 predicted ms |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for m in r["models"]:
        lines.append(f"| {m['model']} | {m['test_top1'] * 100:.2f} | {m['test_top1_float_onnx'] * 100:.2f} | "
                     f"{m['test_top1_int8'] * 100:.2f} | {m['int8_drop_points']:+.2f} | {m['measured_ms']:.3f} | "
                     f"{m['predicted_ms']:.3f} |")
    lines.append("")
    for name, s in r["searched"].items():
        lines.append(f"- searched on the {name}: `{s['arch']}`, INT8 table {s['int8_predicted_ms']:.3f} ms "
                     f"(INT8 target {r['int8_target_ms']:.3f}), float table {s['float_predicted_ms']:.3f} ms")
    lines.append(f"- the same net: {'yes' if r['same_net'] else 'no'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("float_run", type=Path)
    parser.add_argument("int8_run", type=Path)
    parser.add_argument("--float-int8-top1", type=float)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = compare(args.float_run, args.int8_run, args.float_int8_top1)
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
