"""Does the LUT predict what whole networks measure?  Sample architectures, time them end to end,
compare, and (if the plain sum is biased) fit a calibration on one half and report the other half.

Why stratified samples: nets drawn uniformly per layer all sit mid-range (about 3 of 15 layers
skipped, half the ops large), while a search visits the ends too: shallow nets with most layers
skipped, and uniform nets. A calibration fitted on the middle extrapolates there (5-6% off on the
shallowest nets here). So the validation nets spread over the number of skipped layers and over op
size, from the smallest network to the largest, and the report gives the error per third of the range.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spnas.model.arch import Architecture
from spnas.outputs.files import atomic_write_text, write_json
from spnas.latency.device_profiler import Protocol, Stats
from spnas.latency.lut import OP_FEATURES, Calibration, LatencyTable, op_weights
from spnas.latency.parts import Part
from spnas.latency.predict import predict_ms
from spnas.latency.profile import measure_parts
from spnas.latency.backends import Backend
from spnas.nn.network import SinglePathNet
from spnas.outputs.plotting import pyplot, save_figure
from spnas.model.space import SearchSpace, op_name


SAMPLINGS = ("stratified", "uniform")


def sample_architectures(space: SearchSpace, n: int, seed: int, sampling: str = "stratified") -> list[Architecture]:
    """``n`` architectures. ``uniform``: each layer's op uniform over its candidates (skip included).
    ``stratified``: the smallest and the largest network, then nets whose number of skipped layers
    runs evenly from none to all skippable ones, each with its own chance of large kernels and of
    expansion 6 (evenly from 0 to 1), so op size spreads over the whole range too."""
    rng = random.Random(seed)
    layers = space.layers()
    if sampling == "uniform":
        return [Architecture(space.name, tuple(rng.choice(l.candidates) for l in layers)) for _ in range(n)]
    skippable = [l.index for l in layers if l.skippable]
    archs = []
    for i in range(n):
        if i < 2:  # the ends of the range: all skipped at k3e3, and all present at k5e6
            skips, p_k5, p_e6 = (len(skippable), 0.0, 0.0) if i == 0 else (0, 1.0, 1.0)
        else:
            skips, p_k5, p_e6 = round((i - 2) * len(skippable) / max(1, n - 3)), rng.random(), rng.random()
        skipped = set(rng.sample(skippable, skips))
        archs.append(Architecture(space.name, tuple(
            "skip" if l.index in skipped else op_name(5 if rng.random() < p_k5 else 3, 6 if rng.random() < p_e6 else 3)
            for l in layers)))
    rng.shuffle(archs)
    return archs


#: how well validation measures each whole network's median (95% CI) and in at most how many passes.
#: The bar it checks is 2% MAPE: at the 2% the table's parts are timed to, two back-to-back validations
#: of the same 80 nets disagreed by 0.94% per net (std, per measurement; BENCHMARKS.md at 061b308, §10), which is
#: half the bar.
VALIDATION_CI, VALIDATION_PASSES = 0.01, 8


def measure_architectures(
    space: SearchSpace, archs: list[Architecture], backend: Backend, protocol: Protocol, in_process: bool = False,
) -> tuple[list[Stats], dict]:
    """Each architecture's timing, and the measurement's conditions."""
    shape = [1, space.in_channels, space.input_size, space.input_size]
    parts = [Part(str(i), SinglePathNet(space, arch).eval(), shape) for i, arch in enumerate(archs)]
    stats, conditions = measure_parts(backend, parts, protocol, in_process, max_passes=VALIDATION_PASSES,
                                      max_ci=VALIDATION_CI)
    return [stats[str(i)] for i in range(len(archs))], conditions


def error_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    rel = (predicted - measured) / measured
    return {
        "n": int(len(measured)),
        "mape_pct": float(np.mean(np.abs(rel)) * 100),
        "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
        "max_abs_error_pct": float(np.max(np.abs(rel)) * 100),
        "mean_error_pct": float(np.mean(rel) * 100),
        "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "spearman": spearman(predicted, measured),
    }


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (average ranks for ties), without a SciPy dependency."""
    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # average ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


#: networks needed per fitted term beyond a and b before the fit adds per-stage terms
NETS_PER_TERM = 3


def fit_calibration(predicted: np.ndarray, measured: np.ndarray, weights: np.ndarray,
                    stages: list[int], op_terms: bool = True, curvature: bool = True,
                    extent: tuple[float, float] | None = None) -> Calibration:
    """measured ≈ a·predicted + q·predicted² + b + Σ_s c_s·(present layers of stage s) + d_k5·(present 5x5
    layers) + d_e6·(present e6 layers); ``weights`` (networks, layers, 4) one-hot over MBCONV_OPS (all 0
    where skipped, :func:`~spnas.latency.lut.op_weights`) and ``stages`` each layer's stage. Least squares
    of the *relative* residual, as the errors that count (MAPE, ±5%) are relative: an absolute fit lets the
    slow nets' milliseconds set the terms that matter most on the fast ones. A count that does not vary
    gets no term (it cannot be told from b). Terms need NETS_PER_TERM networks each beyond a and b: with
    fewer, the fit drops the curvature q, then the op counts, then falls back to one term for all present
    layers, then to the plain affine fit (``op_terms=False``: never the op counts; ``curvature=False``:
    never q; both to compare). A q that would make a larger net predict faster somewhere between the
    fitted nets, or over ``extent`` (the space's range of plain sums, :meth:`LatencyTable.plain_range`,
    which loading a table checks too), is dropped too. Held-out MAPE, mean of 300 random halves of 11 validations of 80
    stratified nets (BENCHMARKS.md at 061b308, §10): affine 2.43-3.30%, one term per stage 2.02-2.76%, with the op
    counts 1.82-2.78%, with q as well 1.32-1.95%."""
    predicted, n = np.asarray(predicted, dtype=float), len(measured)
    weights = np.asarray(weights, dtype=float)
    presence = weights.sum(-1)
    stage_counts = np.stack([presence[:, [i for i, s in enumerate(stages) if s == stage]].sum(1)
                             for stage in sorted(set(stages))], axis=1)
    op_counts = (weights @ OP_FEATURES).sum(1)  # (networks, 2): present 5x5 layers, present e6 layers
    varying = [s for s in range(stage_counts.shape[1]) if np.ptp(stage_counts[:, s]) > 0]
    ops_varying = [j for j in range(2) if op_terms and np.ptp(op_counts[:, j]) > 0]

    def enough(terms: int) -> bool:
        return n >= NETS_PER_TERM * terms + 2

    squares = (predicted ** 2)[:, None]
    if len(varying) > 1 and ops_varying and curvature and enough(len(varying) + len(ops_varying) + 1):
        terms, note = np.column_stack([stage_counts[:, varying], op_counts[:, ops_varying], squares]), \
            "a term per present layer of each stage, per present 5x5 and e6 layer, and the square of the sum"
    elif len(varying) > 1 and ops_varying and enough(len(varying) + len(ops_varying)):
        terms, note = np.column_stack([stage_counts[:, varying], op_counts[:, ops_varying]]), \
            "a term per present layer of each stage, and per present 5x5 and e6 layer"
    elif len(varying) > 1 and enough(len(varying)):
        terms, note, ops_varying = stage_counts[:, varying], "a term per present layer of each stage", []
    elif np.ptp(presence.sum(1)) > 0 and enough(1):
        terms, note = presence.sum(1, keepdims=True), "one term per present layer"
    else:
        terms, note = np.zeros((n, 0)), "affine"
    design = np.column_stack([predicted, np.ones(n), terms])
    weight = 1.0 / measured
    coef, *_ = np.linalg.lstsq(design * weight[:, None], measured * weight, rcond=None)
    a, b, rest = float(coef[0]), float(coef[1]), [float(c) for c in coef[2:]]
    fitted = Calibration(a, b, n, f"least squares of the relative error on the calibration half, {note}")
    if note.endswith("square of the sum"):
        fitted.q = rest.pop()
        ends = (float(predicted.min()), float(predicted.max()), *(extent or ()))
        if not min(fitted.slope(ms) for ms in ends) > 0:
            return fit_calibration(predicted, measured, weights, stages, op_terms, curvature=False)
    if note.startswith("one term"):
        fitted.per_present_layer = [rest[0]] * len(stages)
    elif rest:
        by_stage = dict(zip(varying, rest))
        order = sorted(set(stages))
        fitted.per_present_layer = [by_stage.get(order.index(s), 0.0) for s in stages]
        by_op = dict(zip(ops_varying, rest[len(varying):]))
        fitted.per_k5_layer, fitted.per_e6_layer = by_op.get(0, 0.0), by_op.get(1, 0.0)
    return fitted


def error_by_range(predicted: np.ndarray, measured: np.ndarray) -> dict[str, dict[str, float]]:
    """The error metrics of the fastest, middle and slowest thirds of the nets (by measured latency)."""
    order = np.argsort(measured)
    thirds = np.array_split(order, 3)
    return {name: error_metrics(predicted[idx], measured[idx])
            for name, idx in zip(("fastest_third", "middle_third", "slowest_third"), thirds) if len(idx)}


@dataclass
class ValidationResult:
    report: dict
    calibration: Calibration


#: what :func:`validate` writes into its output directory
VALIDATION_FILES = ("validation.json", "validation.csv", "validation.png")


def validate(
    lut: LatencyTable, space: SearchSpace, backend: Backend, n: int, seed: int, protocol: Protocol,
    out_dir: Path, sampling: str = "stratified", in_process: bool = False,
) -> ValidationResult:
    """Measure ``n`` sampled whole networks on ``backend`` here and compare them with the table
    (``in_process``: see :func:`spnas.latency.profile.measure_parts`)."""
    torch.manual_seed(seed)
    archs = sample_architectures(space, n, seed, sampling)
    measured_stats, conditions = measure_architectures(space, archs, backend, protocol, in_process)
    return validation_report(lut, space, archs, measured_stats, seed, backend.info(), protocol.to_dict(), out_dir,
                             sampling, conditions)


def validation_report(
    lut: LatencyTable, space: SearchSpace, archs: list[Architecture], measured_stats: list[Stats], seed: int,
    backend_info: dict, protocol: dict, out_dir: Path, sampling: str, conditions: dict | None = None,
) -> ValidationResult:
    """Fit the calibration on half of the measured networks and report the other half (JSON, CSV, PNG),
    wherever they were measured: here, or on a device through a bundle."""
    n = len(archs)
    measured = np.array([s.median for s in measured_stats])
    raw = np.array([predict_ms(lut, a, calibrated=False) for a in archs])
    weights = np.array([op_weights(a.ops) for a in archs])
    present = weights.sum((1, 2))
    idx = np.random.default_rng(seed).permutation(n)
    cal_idx, test_idx = idx[: n // 2], idx[n // 2 :]
    calibration = fit_calibration(raw[cal_idx], measured[cal_idx], weights[cal_idx],
                                  [layer.stage for layer in space.layers()], extent=lut.plain_range(space))
    calibrated = calibration.apply(raw, weights)
    report = {
        "backend": backend_info,
        "space": space.name,
        "space_fingerprint": space.fingerprint(),
        "samples": n,
        "seed": seed,
        "protocol": protocol,
        "lut_protocol": lut.protocol,
        "calibration": calibration.__dict__,
        "held_out_raw": error_metrics(raw[test_idx], measured[test_idx]),
        "held_out_calibrated": error_metrics(calibrated[test_idx], measured[test_idx]),
        "held_out_calibrated_by_range": error_by_range(calibrated[test_idx], measured[test_idx]),
        "sampling": sampling,
        "all_raw": error_metrics(raw, measured),
        "measurement_iqr_pct_median": float(np.median([s.iqr / s.median for s in measured_stats]) * 100),
        "conditions": conditions or {},
    }
    held_out = set(test_idx.tolist())
    rows = [
        {"index": i, "split": "held_out" if i in held_out else "calibration", "arch": a.to_string(),
         "present_layers": int(present[i]),
         "predicted_raw_ms": raw[i], "predicted_calibrated_ms": calibrated[i], "measured_ms": measured[i],
         "measured_iqr_ms": measured_stats[i].iqr}
        for i, a in enumerate(archs)
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    json_file, csv_file, png_file = (out_dir / name for name in VALIDATION_FILES)
    write_json(json_file, report)
    _write_csv(csv_file, rows)
    _scatter(png_file, raw, calibrated, measured, test_idx, report)
    return ValidationResult(report, calibration)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _scatter(path: Path, raw, calibrated, measured, test_idx, report: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    lo, hi = min(raw.min(), measured.min()) * 0.95, max(raw.max(), measured.max()) * 1.05
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="y = x")
    ax.fill_between([lo, hi], [lo * 0.95, hi * 0.95], [lo * 1.05, hi * 1.05], color="k", alpha=0.08, label="±5%")
    ax.scatter(raw[test_idx], measured[test_idx], s=12, c="tab:gray", label="plain LUT sum")
    ax.scatter(calibrated[test_idx], measured[test_idx], s=12, c="tab:blue", label="calibrated")
    m = report["held_out_calibrated"]
    ax.set_title(f"{report['backend']['backend']} / {report['space']}: held-out MAPE {m['mape_pct']:.2f}%, "
                 f"{m['within_5pct'] * 100:.0f}% within ±5%", fontsize=9)
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("measured latency (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
