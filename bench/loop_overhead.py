"""The search and training loops' step time over the bare step's: how much a step spends outside the
forward/backward/optimiser step (``engine.GlobalBatchStep``, batch included) on decisions, the controller,
the landing, the divergence checks, the EMA and logging.

Each job runs through the real CLI, in this process, timed per step by :class:`spnas.jobs.opcount.StepCounter`
(``timing=True``: nothing counted); the ratio is taken per step, over the steps that write no log line,
so both sides of a ratio were measured in the same step. Small space (width 0.5, 28 px, Fashion-MNIST as
in the quick preset), one epoch, at batch 16 (where overheads show) and 128. On CUDA each timed span
synchronises first and last, so it includes the device's work (an upper bound on the ratio).

    python3 bench/loop_overhead.py --out bench/results/loop_overhead.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_results  # noqa: E402

from spnas.cli.main import main as spnas  # noqa: E402
from spnas.jobs.opcount import StepCounter  # noqa: E402
from spnas.latency.synthetic import synthetic_table  # noqa: E402
from spnas.model.space import get_space  # noqa: E402

WIDTH, LOG_EVERY = 0.5, 10


def argv(job: str, tmp: Path, batch: int, steps: int, args) -> list[str]:
    common = ["--data", args.data, "--train-subset", str(steps * batch), "--batch-size", str(batch), "--epochs",
              "1", "--width", str(WIDTH), "--device", args.device, "--out", str(tmp / f"{job}{batch}"),
              "--log-every", str(LOG_EVERY), *args.extra.split()]
    if job == "search":
        lut = tmp / "lut.json"
        synthetic_table(get_space("small", width=WIDTH)).save(lut)
        return ["search", "--lut", str(lut), "--target-ms", "2.2", *common]
    return ["train", "uniform-k5e6", "--space", "small", *common]


def measure(job: str, batch: int, steps: int, args) -> dict:
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    with tempfile.TemporaryDirectory() as tmp, StepCounter(timing=True, synchronize=sync) as counter:
        if spnas(argv(job, Path(tmp), batch, steps, args)):
            raise SystemExit(f"spnas {job} failed")
    rows = counter.steps()[args.skip:]
    quiet = [r for r in rows if r["step"] % LOG_EVERY and r["step"] != len(rows) + args.skip - 1]
    ratios = [r["seconds"] / r["inner_seconds"] for r in quiet]
    logged = [r["seconds"] / r["inner_seconds"] for r in rows if r not in quiet]
    return {"job": job, "batch": batch, "steps": len(rows), "quiet_steps": len(quiet),
            "step_ms_median": statistics.median(r["seconds"] for r in quiet) * 1e3,
            "bare_step_ms_median": statistics.median(r["inner_seconds"] for r in quiet) * 1e3,
            "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                      "mean": statistics.fmean(ratios),
                      "total": sum(r["seconds"] for r in quiet) / sum(r["inner_seconds"] for r in quiet)},
            "ratio_logged_steps_median": statistics.median(logged) if logged else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--batches", type=int, nargs="+", default=[16, 128])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--skip", type=int, default=3, help="first steps left out (allocator and cache warm-up)")
    p.add_argument("--extra", default="", help="options added to every job, e.g. '--amp bf16'")
    p.add_argument("--out", default="bench/results/loop_overhead.json")
    args = p.parse_args()
    results = []
    for job in ("search", "train"):
        for batch in args.batches:
            r = measure(job, batch, args.steps, args)
            q = r["ratio"]
            print(f"{job:6s} batch {batch:4d}: step {r['step_ms_median']:8.2f} ms, bare step {r['bare_step_ms_median']:8.2f}"
                  f" ms; loop/step {q['median']:.3f} median (min {q['min']:.3f}, max {q['max']:.3f}; "
                  f"whole {q['total']:.3f}) over {r['quiet_steps']} unlogged steps", flush=True)
            results.append(r)
    write_results(args.out, results, command="python3 bench/loop_overhead.py " + " ".join(sys.argv[1:]),
                  device=args.device)


if __name__ == "__main__":
    main()
