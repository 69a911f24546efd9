"""ATen ops and host reads per step of ``spnas search`` (each method) and ``spnas train``, counted on the CPU.

On a GPU every ATen op is a kernel launch (10-20 us of Python and driver work each) and every host read
(``item``, ``tolist``, ``bool``, ``float``, ``.cpu()``) waits for the GPU to drain, so these two counts say
whether a loop can keep a GPU busy; both are exact and the same on any machine. Each job runs through
the real CLI, in this process, under :class:`spnas.jobs.opcount.StepCounter`: 30 steps of the small space
at width 0.25, batch 32 (one epoch: warm-up, search, landing window and the last step all included).

    python3 bench/launches.py --out bench/results/launches.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from spnas.cli.main import main as spnas
from spnas.jobs.opcount import StepCounter
from spnas.latency.synthetic import synthetic_table
from spnas.model.space import get_space

STEPS, BATCH, WIDTH = 30, 32, 0.25
#: what the issue asks for, per step (search: single-path)
LIMITS = {"search single-path": 3000, "train k5e6": 1000}


def common(out: Path, data: str, log_every: int) -> list[str]:
    return ["--data", data, "--train-subset", str(STEPS * BATCH), "--batch-size", str(BATCH), "--epochs", "1",
            "--width", str(WIDTH), "--threads", "2", "--device", "cpu", "--out", str(out), "--log-every",
            str(log_every)]


JOBS = ("search single-path", "search multipath", "search random", "train k5e6")


def jobs(tmp: Path, data: str, log_every: int, extra: list[str]) -> dict[str, list[str]]:
    lut = tmp / "lut.json"
    synthetic_table(get_space("small", width=WIDTH)).save(lut)
    search = ["search", "--lut", str(lut), "--target-ms", "1.3"]
    return {
        "search single-path": [*search, *common(tmp / "sp", data, log_every), *extra],
        "search multipath": [*search, "--method", "multipath", *common(tmp / "mp", data, log_every), *extra],
        "search random": [*search, "--method", "random", "--candidates", "3", *common(tmp / "rs", data, log_every),
                          *extra],
        "train k5e6": ["train", "uniform-k5e6", "--space", "small", *common(tmp / "tr", data, log_every), *extra],
    }


def count(argv: list[str], log_every: int) -> dict:
    with StepCounter(where=True) as counter:
        code = spnas(argv)
    if code:
        raise SystemExit(f"spnas {' '.join(argv)} exited with {code}")
    rows = counter.steps()
    quiet = [r for r in rows if r["step"] % log_every and r["step"] != len(rows) - 1]
    logged = [r for r in rows if r not in quiet]

    def spread(key: str, rs: list[dict]) -> dict:
        values = [r[key] for r in rs] or [0]
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    return {"steps": len(rows), "ops": spread("ops", quiet), "inner_ops": spread("inner_ops", quiet),
            "reads": spread("reads", quiet), "reads_logged_steps": spread("reads", logged),
            "ops_logged_steps": spread("ops", logged),
            "read_at": sorted({w for r in quiet for w in r["read_at"]}),
            "top_ops": counter.top_ops([r["step"] for r in quiet]), "per_step": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="any dataset spec; synthetic:1200:1:28:10 needs no files")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--jobs", nargs="+", choices=JOBS, help="a subset of the jobs (default: all)")
    p.add_argument("--extra", default="", help="options added to every job, e.g. '--compile'")
    p.add_argument("--out", default="bench/results/launches.json")
    args = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in jobs(Path(tmp), args.data, args.log_every, args.extra.split()).items():
            if args.jobs and name not in args.jobs:
                continue
            r = results[name] = count(argv, args.log_every)
            limit = LIMITS.get(name)
            print(f"{name:20s} ops/step {r['ops']['median']:6.0f} (min {r['ops']['min']}, max {r['ops']['max']}; "
                  f"forward/backward/optimiser {r['inner_ops']['median']:.0f})"
                  f"{f', limit {limit}' if limit else ''}; host reads per quiet step {r['reads']['median']:g} "
                  f"(max {r['reads']['max']}), per logged step {r['reads_logged_steps']['max']}", flush=True)
            for where in r["read_at"]:
                print(f"    read: {where}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "command": "python3 bench/launches.py " + " ".join(sys.argv[1:]), "commit": commit, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "steps": STEPS, "batch": BATCH, "width": WIDTH,
        "results": results}, indent=1))


if __name__ == "__main__":
    main()
