"""Measurements you can trust: medians until stable, the machine's conditions recorded, busy or
unsteady machines named; exported models timed in a fresh process."""

from __future__ import annotations

import itertools
import random
import time

import pytest
import torch

from spnas.latency import device_profiler
from spnas.latency.device_profiler import Protocol, median_ci, measure_until_stable

QUICK = Protocol(warmup=1, repeats=20, burst=2)


@pytest.fixture
def quiet_machine(monkeypatch):
    """Load and the reference kernel as on an idle machine, whatever this one is doing."""
    monkeypatch.setattr(device_profiler, "load_average", lambda: 0.1)
    monkeypatch.setattr(device_profiler, "reference_kernel_ms", lambda repeats=30: 1.0)
    monkeypatch.setattr(device_profiler, "busy_cpu_s", lambda: None)


def test_the_median_ci_covers_the_median_and_narrows_with_more_samples():
    rng = random.Random(0)
    few, many = [rng.gauss(10, 1) for _ in range(20)], [rng.gauss(10, 1) for _ in range(2000)]
    (lo1, hi1), (lo2, hi2) = median_ci(few), median_ci(many)
    assert lo1 < 10 < hi1 and lo2 < 10 < hi2
    assert hi2 - lo2 < (hi1 - lo1) / 4


def test_steady_runners_take_one_pass_and_raise_no_warning(quiet_machine):
    stats, conditions = measure_until_stable({"a": lambda: 1.0, "b": lambda: 2.0}, QUICK)
    assert (stats["a"].median, stats["b"].median) == (1.0, 2.0)
    assert conditions["passes"] == 1 and conditions["warnings"] == [] and conditions["ci_pct"] == 0.0


def test_noisy_runners_get_more_passes_and_say_so(quiet_machine):
    rng = random.Random(0)
    stats, conditions = measure_until_stable({"noisy": lambda: rng.uniform(0.5, 1.5)}, QUICK, max_passes=3)
    assert conditions["passes"] == 3 and stats["noisy"].n == 3 * 20 * 2
    assert any("spread" in w for w in conditions["warnings"]) and any("±" in w for w in conditions["warnings"])


def test_a_tighter_ci_takes_more_passes_until_the_median_is_known_to_it(quiet_machine):
    def passes(max_ci: float) -> int:
        rng = random.Random(0)
        runners = {"noisy": lambda: rng.uniform(0.9, 1.1)}
        return measure_until_stable(runners, QUICK, max_passes=8, max_ci=max_ci)[1]["passes"]

    assert passes(0.05) == 1 and 1 < passes(0.02) < 8 and passes(0.001) == 8  # uniform ±10%: ±5% at once


def test_a_busy_machine_is_named(monkeypatch):
    monkeypatch.setattr(device_profiler, "load_average", lambda: 9.0)
    monkeypatch.setattr(device_profiler, "busy_cpu_s", lambda: None)  # a system without /proc/stat
    clock = itertools.count()
    monkeypatch.setattr(device_profiler, "reference_kernel_ms", lambda repeats=30: 1.0 + 0.5 * next(clock))
    _, conditions = measure_until_stable({"a": lambda: 1.0}, QUICK)
    assert conditions["reference_drift_pct"] == pytest.approx(50.0)
    assert any("reference kernel ran +50% slower" in w for w in conditions["warnings"])
    assert any(w.startswith("load average 9.0") for w in conditions["warnings"])  # no /proc/stat: the load average


def test_other_processes_are_told_from_our_own_work_by_cpu_time(monkeypatch):
    """The load average still reads busy a minute after a job of ours ended; CPU time taken by others
    while we measured does not."""
    monkeypatch.setattr(device_profiler, "load_average", lambda: 9.0)  # e.g. our own training just ended
    monkeypatch.setattr(device_profiler, "reference_kernel_ms", lambda repeats=30: 1.0)
    readings = iter([100.0, 100.0])  # nobody else ran: the machine was busy only with our own work

    def busy() -> float:
        return next(readings) + time.process_time()

    monkeypatch.setattr(device_profiler, "busy_cpu_s", busy)
    _, conditions = measure_until_stable({"a": lambda: 1.0}, QUICK)
    assert conditions["other_cores"] < 0.1 and conditions["warnings"] == []  # our own CPU time is left out
    assert device_profiler.other_cores(100.0, 103.5, 0.5, 2.0) == pytest.approx(1.5)  # 3 s of others' CPU in 2 s
    readings = iter([0.0, 1e6])  # others took all of every core
    _, conditions = measure_until_stable({"a": lambda: 1.0}, QUICK)
    assert any(w.startswith("other processes kept") for w in conditions["warnings"])
    monkeypatch.undo()  # the real reader
    real = device_profiler.busy_cpu_s()
    assert real is None or real > 0


def test_exported_models_are_timed_in_a_fresh_process(tmp_path):
    from spnas.latency.fresh_process import measure_onnx_models
    from spnas.deploy.onnx_io import onnx_bytes

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_bytes(model, [1, 1, 16, 16]))
    stats, conditions = measure_onnx_models({"m": str(path)}, [1, 1, 16, 16], 1, QUICK, tmp_path / "measure")
    assert stats["m"].median > 0 and stats["m"].n >= 40
    assert {"load_before", "reference_drift_pct", "ci_pct", "passes", "warnings"} <= set(conditions)


def test_the_device_profilers_progress_counts_passes_and_times_rounds_from_each_passs_first(monkeypatch):
    import io
    clock = iter([10.0, 11.0, 12.0, 100.0, 102.0, 104.0])  # pass 1 after 10 s of warm-up; pass 2 much later
    monkeypatch.setattr(device_profiler.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    progress = device_profiler.TextProgress(out)
    for _ in range(2):
        for done in (1, 2, 3):
            progress(done, 3)
    lines = [part.strip() for part in out.getvalue().replace("\n", "\r").split("\r") if part.strip()]
    assert lines[0] == "pass 1  round 1/3  -- rounds/s  ETA --"  # no rate from warm-up time
    assert lines[1] == "pass 1  round 2/3  1.0 rounds/s  ETA 1s"
    assert lines[3] == "pass 2  round 1/3  -- rounds/s  ETA --"  # a new pass: not 90 s per round
    assert lines[4] == "pass 2  round 2/3  0.5 rounds/s  ETA 2s"
    assert out.getvalue().count("\n") == 2  # a line ends with each pass
