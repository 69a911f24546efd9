"""Training throughput (images/s) of the search's supernet step and of a standalone net's step, with 1
and N processes, and the projected wall time of the paper's 8-epoch ImageNet search on this machine.

It times spnas's own step (``engine.GlobalBatchStep``: forward, the runtime term for the supernet,
backward, the L2 term's gradient, gradient norms, optimiser step) on random images, so data loading is left out. N processes
are joined as torchrun would (``Replicas``, gloo on the CPU, NCCL on CUDA); on the CPU the cores are
shared out (1 process x C threads against N processes x C/N threads), on CUDA each process has a GPU.

    python3 bench/throughput.py --out bench/results/throughput.json            # every device here
    python3 bench/throughput.py --spaces small --device cpu --steps 5           # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from common import flat_lut, write_results  # noqa: E402  (a LUT whose values do not change a step's time)

from spnas.model.arch import uniform  # noqa: E402
from spnas.jobs.device import Precision  # noqa: E402
from spnas.jobs.engine import GlobalBatchStep  # noqa: E402
from spnas.latency.predict import differentiable_ms, lut_tensor  # noqa: E402
from spnas.nn.network import SinglePathNet  # noqa: E402
from spnas.jobs.optim import L2Term, make_optimizer  # noqa: E402
from spnas.jobs.replicas import Replicas  # noqa: E402
from spnas.search.objective import runtime_term  # noqa: E402
from spnas.model.space import get_space  # noqa: E402

#: the paper's search (SPEC §5): 8 epochs of ImageNet at global batch 1024
PAPER_SEARCH_STEPS, PAPER_GLOBAL_BATCH = 10_008, 1024
#: the small space at its default data's size (Fashion-MNIST), the imagenet space at 224 px
SPACES = {"small": {}, "imagenet": {}}


def time_steps(rank: int, world: int, port: int, job: dict, result_file: str) -> None:
    """One process: join the others, build the model, time ``job['steps']`` steps after warm-up."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(job["threads"])
    replicas = Replicas.from_env()
    device = replicas.device(torch.device(job["device"]))
    replicas.start(device)
    precision = Precision(device, job["amp"])
    space = get_space(job["space"])
    torch.manual_seed(0)
    net = precision.prepare(SinglePathNet(space) if job["model"] == "supernet" else
                            SinglePathNet(space, uniform(space, "k5e6")))
    optimizer = make_optimizer("tf-rmsprop", net.parameters(), 0.01)
    step = GlobalBatchStep(replicas.wrap(net, device), net, optimizer, precision, replicas, world, 0.1,
                           L2Term.of(net, 1e-5))
    b = job["per_process_batch"]
    x = torch.randn(b, space.in_channels, space.input_size, space.input_size)
    y = torch.randint(0, space.num_classes, (b,))
    lut = flat_lut(space)
    table = lut_tensor(lut, device)

    def runtime() -> torch.Tensor:
        return runtime_term(differentiable_ms(lut, net.indicators().float(), table=table), 0.02)

    regulariser = runtime if job["model"] == "supernet" else None

    times = []
    for i in range(job["warmup"] + job["steps"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        replicas.barrier()
        t0 = time.perf_counter()
        step(i, lambda part: (x, y), step_seed=i, regulariser=regulariser)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= job["warmup"]:
            times.append(time.perf_counter() - t0)
    if replicas.main:
        Path(result_file).write_text(json.dumps(times))
    replicas.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(job: dict, world: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = str(Path(tmp) / "times.json")
        if world == 1:
            time_steps(0, 1, free_port(), job, result_file)
        else:
            mp.spawn(time_steps, args=(world, free_port(), job, result_file), nprocs=world)
        times = json.loads(Path(result_file).read_text())
    global_batch = job["per_process_batch"] * world
    rates = [global_batch / t for t in times]
    median = statistics.median(rates)
    return {**job, "processes": world, "global_batch": global_batch, "step_s": times,
            "images_per_s": {"median": median, "min": min(rates), "max": max(rates)},
            "paper_search_projected_h": (PAPER_SEARCH_STEPS * PAPER_GLOBAL_BATCH / median / 3600
                                         if job["space"] == "imagenet" and job["model"] == "supernet" else None)}


def devices(spec: str) -> list[tuple[str, int]]:
    """(device, processes to compare with 1) for every device asked for that is present."""
    found = []
    if spec in ("all", "cpu"):
        found.append(("cpu", min(2, os.cpu_count() or 1)))
    if spec in ("all", "cuda") and torch.cuda.is_available():
        found.append(("cuda", torch.cuda.device_count()))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("all", "cpu", "cuda"), default="all")
    p.add_argument("--spaces", nargs="+", choices=tuple(SPACES), default=list(SPACES))
    p.add_argument("--models", nargs="+", choices=("supernet", "k5e6"), default=["supernet", "k5e6"])
    p.add_argument("--batch", type=int, nargs=2, metavar=("SMALL", "IMAGENET"), default=(64, 8),
                   help="images per process per step, for the small and the imagenet space (default: 64 8 on "
                   "the CPU; four times these on CUDA)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default="bench/results/throughput.json")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    results = []
    for device, n in devices(args.device):
        amps = ("off", "bf16") if device == "cuda" else ("off",)
        for space in args.spaces:
            for model in args.models:
                for amp in amps:
                    batch = args.batch[space == "imagenet"] * (4 if device == "cuda" else 1)
                    for world in sorted({1, n}):
                        threads = max(1, cores // world) if device == "cpu" else 1
                        job = {"device": device, "amp": amp, "space": space, "model": model, "threads": threads,
                               "per_process_batch": batch, "steps": args.steps, "warmup": args.warmup}
                        r = measure(job, world)
                        q = r["images_per_s"]
                        hours = r["paper_search_projected_h"]
                        print(f"{device:4s} amp={amp:4s} {space:8s} {model:8s} {world} proc x {threads} thr, "
                              f"batch {r['global_batch']:4d}: {q['median']:8.1f} img/s (min {q['min']:.1f}, max "
                              f"{q['max']:.1f})" + (f"; the paper's search would take {hours:.3g} h" if hours else ""),
                              flush=True)
                        results.append(r)
    write_results(args.out, results, cores=cores,
                  cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)


if __name__ == "__main__":
    main()
