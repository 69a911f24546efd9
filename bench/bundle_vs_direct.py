"""A device bundle's calibrated table against direct timing, on this machine: the same networks predicted by
the table each path makes and timed by a plain onnxruntime loop.

Paths (float32, or INT8 with --precision int8):
  direct      `spnas latency profile` then `spnas latency validate` (80 networks) here: each timed in a
              fresh process that loads only numpy and onnxruntime, as a bundle is on a device
  direct-in-process  the same, timed in this process beside torch (as spnas did before)
  bundle      `spnas latency bundle`, its profile_device.py run in a fresh process as on a device (layers,
              then the whole networks apart), back through `profile --from-bundle-results`
  bundle-old  the same bundle timed as bundles were before: the networks interleaved with the layers
Then 30 other networks (stratified, another seed), each exported and timed alone in a plain loop
(``session.run`` after a warm-up, the median of 300 runs): every table's prediction of them is compared.

    python3 bench/bundle_vs_direct.py --out bench/results/bundle_vs_direct.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

from spnas.deploy.quantize import ModelFormat, int8_format  # noqa: E402
from spnas.latency import device_profiler  # noqa: E402
from spnas.latency.backends import get_backend  # noqa: E402
from spnas.latency.bundle import calibrate_from_bundle_results, write_bundle  # noqa: E402
from spnas.latency.device_profiler import Protocol  # noqa: E402
from spnas.latency.predict import predict_ms  # noqa: E402
from spnas.latency.profile import lut_from_bundle_results, profile_space  # noqa: E402
from spnas.latency.validate import sample_architectures, validate  # noqa: E402
from spnas.model.space import get_space  # noqa: E402
from spnas.nn.network import SinglePathNet  # noqa: E402


def plain_loop_ms(model: bytes, shape: list[int], runs: int = 300) -> float:
    """A network timed alone: one session, a warm-up, then the median of ``runs`` back-to-back runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    for _ in range(50):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bundle_table(space, fmt: ModelFormat, work: Path, apart: bool, networks: int, repeats: int):
    out = work / ("bundle" if apart else "bundle_old")
    write_bundle(space, out, networks=networks, fmt=fmt)
    results = out / "results.json"
    command = [sys.executable, "-I", str(out / "profile_device.py"), "--out", str(results), "--no-warnings",
               "--repeats", str(repeats)]
    subprocess.run(command + ([] if apart else ["--networks-with-layers"]), check=True, stdout=subprocess.DEVNULL)
    data = json.loads(results.read_text())
    lut = lut_from_bundle_results(data, str(results))
    calibrate_from_bundle_results(lut, data, str(results), out / "validation")
    return lut


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", choices=("float32", "int8"), default="float32")
    p.add_argument("--width", type=float, default=0.5, help="the small space's width (default 0.5, the quick preset's)")
    p.add_argument("--held-out", type=int, default=30)
    p.add_argument("--networks", type=int, default=80, help="validation networks of each path (default 80)")
    p.add_argument("--repeats", type=int, default=100, help="rounds of the layers' timing (default 100; the "
                   "networks' validation takes 60)")
    p.add_argument("--paths", nargs="+", default=["direct", "direct-in-process", "bundle", "bundle-old"],
                   choices=["direct", "direct-in-process", "bundle", "bundle-old"])
    p.add_argument("--out", default="bench/results/bundle_vs_direct.json")
    args = p.parse_args()
    space = get_space("small", width=args.width)
    fmt = int8_format(space, "fashion-mnist", None) if args.precision == "int8" else ModelFormat()
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for path in ("direct", "direct-in-process"):
            if path not in args.paths:
                continue
            backend, in_process = get_backend("onnxruntime-cpu", 1, fmt), path == "direct-in-process"
            lut = profile_space(space, backend, Protocol(warmup=10, repeats=args.repeats), in_process)
            lut.calibration = validate(lut, space, backend, args.networks, 0,
                                       Protocol(warmup=5, repeats=max(5, args.repeats * 3 // 5)), work / path,
                                       in_process=in_process).calibration
            tables[path] = lut
        if "bundle" in args.paths:
            tables["bundle"] = bundle_table(space, fmt, work, True, args.networks, args.repeats)
        if "bundle-old" in args.paths:
            tables["bundle-old"] = bundle_table(space, fmt, work, False, args.networks, args.repeats)
        shape = [1, space.in_channels, space.input_size, space.input_size]
        nets = sample_architectures(space, args.held_out, seed=1)
        models = [fmt.onnx(SinglePathNet(space, a).eval(), shape) for a in nets]
        time.sleep(0.5)  # torch's OpenMP threads idle before anything is timed
        measured = [plain_loop_ms(m, shape) for m in models]
    results = {}
    for name, lut in tables.items():
        predicted = np.array([predict_ms(lut, a) for a in nets])
        rel = (predicted - np.array(measured)) / np.array(measured)
        results[name] = {"mean_error_pct": float(rel.mean() * 100), "mape_pct": float(np.abs(rel).mean() * 100),
                         "within_1pct_mean": bool(abs(rel.mean()) <= 0.01),
                         "within_5pct": float((np.abs(rel) <= 0.05).mean()), "calibration": lut.calibration.__dict__}
        print(f"{name:11s} predicts the plain loop {rel.mean() * 100:+.2f}% on average (MAPE {np.abs(rel).mean() * 100:.2f}%, "
              f"{(np.abs(rel) <= 0.05).mean() * 100:.0f}% within ±5%)", flush=True)
    write_results(args.out, [{"precision": args.precision, "width": args.width, "held_out": args.held_out,
                              "plain_loop_ms": measured, "networks": [a.to_string() for a in nets], "paths": results}],
                  command="python3 bench/bundle_vs_direct.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
