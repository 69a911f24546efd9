#!/usr/bin/env python3
"""The timing protocol, and a standalone profiler for a device bundle.

This file deliberately imports nothing from spnas: `spnas latency bundle` copies it verbatim as
`profile_device.py` next to the exported ONNX models, so a phone, a Raspberry Pi or any edge box can
profile with only `numpy` and `onnxruntime`. spnas itself uses the same functions, so the numbers
from a bundle and from `spnas latency profile` follow one protocol.

Protocol: build every runner first; warm each up; then for R rounds visit every runner in a freshly
shuffled order per round (so drift, thermal throttling and neighbours' load spread evenly over all
entries instead of biasing whichever was measured last); report the median and the inter-quartile
range of the samples.

Cache state is part of the protocol. ``warm`` (the default): at each visit the runner runs once
untimed, then ``burst`` timed runs back to back, so every timed run finds its own weights and buffers
in cache, as a model does when it runs in a loop on its own (TFLite's benchmark_model, a camera
pipeline). ``cold``: one timed run per visit, straight after the other runners evicted it. On a
2-core EPYC, a small-space net of 2.3 MB of weights measured 0.16-0.18 ms warm and 0.29-0.35 ms cold
when interleaved with 39 others: a table and a check must use the same state, or they disagree by 2x.

Usage on the device:  python3 profile_device.py [--threads N] [--repeats R] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

Runner = Callable[[], float]  # runs one inference, returns its time in ms
CACHE_STATES = ("warm", "cold")


@dataclass(frozen=True)
class Protocol:
    warmup: int = 10
    repeats: int = 100
    seed: int = 0
    #: "warm" (a model running in a loop) or "cold" (caches evicted by the other models)
    cache: str = "warm"
    #: timed runs per visit in warm mode (after one untimed run)
    burst: int = 5

    def __post_init__(self) -> None:
        """The one check of a protocol's values (the CLI, the bundle script and spnas run all build one)."""
        if self.cache not in CACHE_STATES:
            raise ValueError(f"--cache must be one of {', '.join(CACHE_STATES)}, got {self.cache!r}")
        for name, low in (("repeats", 1), ("burst", 1), ("warmup", 0), ("seed", 0)):
            if getattr(self, name) < low:
                raise ValueError(f"--{name} must be >= {low}, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Stats:
    median: float
    iqr: float
    mean: float
    min: float
    n: int

    @classmethod
    def of(cls, samples: list[float]) -> "Stats":
        q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
        return cls(statistics.median(samples), q[2] - q[0], statistics.fmean(samples), min(samples), len(samples))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> "Stats":
        """The statistics as :meth:`to_dict` (or a results file) wrote them; other keys are ignored."""
        return cls(data["median"], data["iqr"], data["mean"], data["min"], int(data["n"]))


def measure_interleaved(
    runners: Mapping[str, Runner],
    protocol: Protocol,
    progress: Callable[[int, int], None] | None = None,
    samples_out: dict[str, list[float]] | None = None,
) -> dict[str, Stats]:
    """Visit every runner ``protocol.repeats`` times, interleaved in shuffled order each round; in
    warm mode each visit is one untimed run and ``protocol.burst`` timed ones. ``samples_out``: lists
    per runner the samples are appended to (to pool several passes)."""
    keys = list(runners)
    for key in keys:
        for _ in range(protocol.warmup):
            runners[key]()
    rng = random.Random(protocol.seed)
    samples: dict[str, list[float]] = samples_out if samples_out is not None else {k: [] for k in keys}
    for r in range(protocol.repeats):
        rng.shuffle(keys)
        for key in keys:
            run = runners[key]
            if protocol.cache == "cold":
                samples[key].append(run())
                continue
            run()  # untimed: brings this model's weights back into cache
            samples[key].extend(run() for _ in range(protocol.burst))
        if progress is not None:
            progress(r + 1, protocol.repeats)
    return {k: Stats.of(v) for k, v in samples.items()}


def median_ci(samples: list[float]) -> tuple[float, float]:
    """A distribution-free 95% confidence interval of the median: the order statistics at ranks
    n/2 ± 1.96·sqrt(n)/2 (binomial, normal approximation)."""
    ordered = sorted(samples)
    n = len(ordered)
    half = 0.98 * n ** 0.5
    return ordered[max(0, int(n / 2 - half))], ordered[min(n - 1, int(n / 2 + half))]


def reference_kernel_ms(repeats: int = 30) -> float:
    """The median time of a fixed numpy kernel (a 192x192 float32 matmul, 5 times): timed before and
    after a measurement, a change says the machine's speed changed under it (other load, throttling)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            a @ a
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_cpu_s() -> float | None:
    """CPU seconds every process on the machine has spent busy since boot (Linux's /proc/stat: user,
    nice, system, irq, softirq, steal), or None elsewhere. Why beside the load average: the load
    average is a minute-long moving average, so right after a job of our own (a training) it still
    reads busy while the machine is quiet; busy time over the measurement, less our own, is what
    other processes took while we timed."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def other_cores(busy_before: float | None, busy_after: float | None, own_cpu_s: float, wall_s: float) -> float | None:
    """How many cores other processes kept busy on average over ``wall_s`` seconds, or None if unknown."""
    if busy_before is None or busy_after is None or wall_s <= 0:
        return None
    return max(0.0, (busy_after - busy_before - own_cpu_s) / wall_s)


#: a measurement is "unsteady" past these: the reference kernel's drift, a median's 95% CI half-width,
#: the median inter-quartile range, all relative to the median
MAX_REFERENCE_DRIFT, MAX_CI, MAX_SPREAD = 0.10, 0.02, 0.10
#: cores other processes may keep busy on average while a measurement runs before it is called disturbed
MAX_OTHER_CORES = 0.5


def measure_until_stable(
    runners: Mapping[str, Runner], protocol: Protocol, progress: Callable[[int, int], None] | None = None,
    max_passes: int = 3, max_ci: float = MAX_CI,
) -> tuple[dict[str, Stats], dict]:
    """:func:`measure_interleaved`, repeated (up to ``max_passes`` passes, the samples pooled) until
    every model's median is known to ±``max_ci`` (95% CI; 2% by default), with the conditions
    recorded: load average and a reference kernel before and after, spread and CI.
    ``conditions["warnings"]`` says why figures taken on a busy or unsteady machine should not be
    trusted."""
    cores = os.cpu_count() or 1
    load_before, reference_before = load_average(), reference_kernel_ms()
    busy_before, own_before, wall_before = busy_cpu_s(), time.process_time(), time.perf_counter()
    pooled: dict[str, list[float]] = {k: [] for k in runners}
    passes = 0
    while True:
        passes += 1
        this_pass = replace(protocol, warmup=protocol.warmup if passes == 1 else 1, seed=protocol.seed + passes - 1)
        measure_interleaved(runners, this_pass, progress, samples_out=pooled)
        ci = {k: median_ci(v) for k, v in pooled.items()}
        widest = max((hi - lo) / 2 / statistics.median(pooled[k]) for k, (lo, hi) in ci.items())
        if widest <= max_ci or passes >= max_passes:
            break
    others = other_cores(busy_before, busy_cpu_s(), time.process_time() - own_before, time.perf_counter() - wall_before)
    load_after, reference_after = load_average(), reference_kernel_ms()
    stats = {k: Stats.of(v) for k, v in pooled.items()}
    spread = statistics.median(s.iqr / s.median for s in stats.values())
    drift = reference_after / reference_before - 1
    warnings = []
    if abs(drift) > MAX_REFERENCE_DRIFT:
        warnings.append(f"a reference kernel ran {drift * 100:+.0f}% slower after the measurement than before: the "
                        "machine's speed changed under it (other load, throttling)")
    if others is not None:  # measured over the measurement itself, our own process left out
        if others > MAX_OTHER_CORES:
            warnings.append(f"other processes kept {others:.1f} of {cores} cores busy while it measured: they competed "
                            "for the CPU")
    else:  # the load average alone (no /proc/stat): it also counts a job of ours that just ended
        busy = [v for v in (load_before, load_after) if v is not None and v > cores - 0.5]
        if busy:
            warnings.append(f"load average {max(busy):.1f} on {cores} cores: other processes competed for the CPU")
    if spread > MAX_SPREAD:
        warnings.append(f"the runs of a model spread by {spread * 100:.0f}% of their median (IQR): an unsteady machine")
    if widest > max_ci:
        warnings.append(f"after {passes} passes a median is still only known to ±{widest * 100:.1f}% (95% CI)")
    conditions = {"cores": cores, "load_before": load_before, "load_after": load_after, "other_cores": others,
                  "reference_ms_before": reference_before, "reference_ms_after": reference_after,
                  "reference_drift_pct": drift * 100, "spread_pct": spread * 100, "ci_pct": widest * 100,
                  "passes": passes, "median_ci_ms": {k: list(v) for k, v in ci.items()}, "warnings": warnings}
    return stats, conditions


def ort_runner(model: str | bytes, input_shape: list[int], threads: int = 1) -> Runner:
    """An onnxruntime CPU session for one model with a fixed random input."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feed = {name: np.random.default_rng(0).standard_normal(input_shape).astype(np.float32)}
    clock = time.perf_counter

    def run() -> float:
        start = clock()
        session.run(None, feed)
        return (clock() - start) * 1e3

    return run


def ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__


def device_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "Hardware", "Model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"machine": platform.machine(), "cpu": cpu, "system": platform.system(),
            "hostname": platform.node(), "python": platform.python_version()}


class TextProgress:
    """Pass and round counter with rate and ETA on stderr (tqdm may not exist on the device).

    Why not one clock from the start: :func:`measure_until_stable` calls this once per round of each pass,
    counting rounds from 1 again, and each pass starts with untimed warm-up runs; an ETA over the
    whole elapsed time divided by the rounds of this pass was absurd from the second pass on. The rate
    is taken from the pass's first round on, so warm-up time does not count."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.passes = 0
        self.first_round_at = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == 1:  # every pass counts its rounds from 1
            self.passes += 1
            self.first_round_at = now
            rate = eta = "--"
        else:
            per_round = (now - self.first_round_at) / (done - 1)
            rate, eta = f"{1 / max(per_round, 1e-9):.1f}", f"{per_round * (total - done):.0f}s"
        self.stream.write(f"\rpass {self.passes}  round {done}/{total}  {rate} rounds/s  ETA {eta} ")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


#: passes a bundle may take: its whole networks are what the calibration is fitted on and checked against,
#: and with 3 passes their medians were known only to about ±4% here (BENCHMARKS.md at 061b308, §10)
BUNDLE_MAX_PASSES = 8


def profile_bundle(bundle_dir: str, threads: int, protocol: Protocol, warn: bool = True,
                   max_passes: int = BUNDLE_MAX_PASSES, networks_apart: bool = True, max_ci: float = MAX_CI) -> dict:
    """Measure every model of a bundle's manifest, in passes until every median is known to ±2% (up to
    ``max_passes``); the result is what `spnas latency profile --from-bundle-results` turns into a LUT.

    The layers are timed interleaved among themselves, then the whole networks among themselves, as
    `spnas latency profile` and `spnas latency validate` time them on one machine: timed all interleaved
    (``networks_apart=False``, what bundles did before), the networks ran 3-4% slower than in a loop of
    their own, and the calibration fitted on them carried that into every prediction
    (bench/bundle_vs_direct.py)."""
    with open(os.path.join(bundle_dir, "manifest.json")) as f:
        manifest = json.load(f)
    runners = {
        key: ort_runner(os.path.join(bundle_dir, entry["file"]), entry["input_shape"], threads)
        for key, entry in manifest["models"].items()
    }
    networks = set(manifest.get("networks") or {}) if networks_apart else set()
    groups = [g for g in ({k: r for k, r in runners.items() if k not in networks},
                          {k: r for k, r in runners.items() if k in networks}) if g]
    stats, conditions = {}, {}
    for group in groups:
        group_stats, group_conditions = measure_until_stable(group, protocol, TextProgress(), max_passes=max_passes,
                                                             max_ci=max_ci)
        stats.update(group_stats)
        if not conditions:
            conditions = group_conditions
        else:  # the networks' own figures beside the layers', every warning of either
            conditions = {**conditions, "networks": group_conditions,
                          "warnings": conditions["warnings"] + group_conditions["warnings"]}
    conditions["networks_apart"] = bool(networks)
    for warning in conditions["warnings"] if warn else ():
        sys.stderr.write(f"warning: {warning}\n")
    return {
        "format": "spnas-bundle-results/1",
        "conditions": conditions,
        "manifest": manifest,
        "runtime": "onnxruntime",
        "runtime_version": ort_version(),
        "threads": threads,
        "device": device_info(),
        "protocol": protocol.to_dict(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stats": {k: s.to_dict() for k, s in stats.items()},
    }


def main(argv: list[str] | None = None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="Profile a spnas latency bundle with onnxruntime.")
    p.add_argument("--bundle", default=here, help="bundle directory (default: this script's)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--warmup", type=int, default=Protocol.warmup)
    p.add_argument("--repeats", type=int, default=Protocol.repeats)
    p.add_argument("--cache", choices=CACHE_STATES, default=Protocol.cache,
                   help="warm: each model timed in a burst after an untimed run; cold: one run per visit")
    p.add_argument("--burst", type=int, default=Protocol.burst, help="timed runs per visit when warm")
    p.add_argument("--max-passes", type=int, default=BUNDLE_MAX_PASSES,
                   help="measure in passes until every median is known to ±2%% (95%% CI), at most this many "
                   f"(default {BUNDLE_MAX_PASSES})")
    p.add_argument("--max-ci", type=float, default=MAX_CI,
                   help=f"the 95%% CI of every median to reach, as a fraction of it (default {MAX_CI})")
    p.add_argument("--seed", type=int, default=Protocol.seed, help="seed of the interleaving order")
    p.add_argument("--out", default="results.json", help="where to write the results JSON")
    p.add_argument("--networks-with-layers", action="store_true",
                   help="time the whole networks interleaved with the layers (as bundles did before; they then "
                   "measure a few percent slow) instead of apart")
    p.add_argument("--no-warnings", action="store_true",
                   help="leave the warnings about an unsteady machine to the caller (they are in the results)")
    args = p.parse_args(argv)
    try:
        protocol = Protocol(args.warmup, args.repeats, seed=args.seed, cache=args.cache, burst=args.burst)
    except ValueError as err:
        p.error(str(err))
    if args.max_passes < 1:
        p.error(f"--max-passes must be at least 1, got {args.max_passes}")
    if not 0 < args.max_ci < 1:
        p.error(f"--max-ci must be a fraction between 0 and 1, got {args.max_ci}")
    result = profile_bundle(args.bundle, args.threads, protocol, warn=not args.no_warnings, max_passes=args.max_passes,
                            networks_apart=not args.networks_with_layers, max_ci=args.max_ci)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}; turn it into a LUT with: spnas latency profile --from-bundle-results {args.out} --out lut.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
