"""Search cost: one training step of the single-path supernet, of the all-k5e6 standalone net, and of a
multi-path supernet (every op a branch), side by side on the same space, batch and threads (issue 17).

Time: the three steps interleaved in one process (blocks of steps in rotating order, so drift of the
machine's speed hits all alike); a step is forward, cross-entropy plus the latency term for the two
supernets, backward, TF-RMSProp. Memory: each model's steps again in a fresh process, reporting how far
the steps raise the process's peak resident memory above what it held before the first step
(activations, gradients, optimiser state).

    python3 bench/search_cost.py --out bench/results/search_cost.json
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import flat_lut, write_results  # noqa: E402  (a LUT whose values do not change a step's time)

from spnas.model.arch import uniform  # noqa: E402
from spnas.latency.predict import differentiable_ms, lut_tensor  # noqa: E402
from spnas.nn.multipath import MultiPathNet  # noqa: E402
from spnas.nn.network import SinglePathNet  # noqa: E402
from spnas.jobs.optim import make_optimizer  # noqa: E402
from spnas.model.space import get_space  # noqa: E402

MODELS = ("single-path", "k5e6", "multi-path")
#: the paper's search (SPEC §5): 8 epochs of ImageNet at global batch 1024
PAPER_SEARCH_STEPS, PAPER_GLOBAL_BATCH = 10_008, 1024


def make_step(model: str, space_name: str, batch: int):
    space = get_space(space_name)
    torch.manual_seed(0)
    net = {"single-path": lambda: SinglePathNet(space), "k5e6": lambda: SinglePathNet(space, uniform(space, "k5e6")),
           "multi-path": lambda: MultiPathNet(space)}[model]()
    optimizer = make_optimizer("tf-rmsprop", net.parameters(), 0.01)
    lut = flat_lut(space)
    table = lut_tensor(lut)
    x = torch.randn(batch, space.in_channels, space.input_size, space.input_size)
    y = torch.randint(0, space.num_classes, (batch,))
    net.train()

    def step() -> None:
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        if model == "single-path":
            loss = loss + 0.02 * 1000 * torch.log(differentiable_ms(lut, net.indicators(), table=table))
        elif model == "multi-path":
            loss = loss + 0.02 * 1000 * torch.log(net.expected_ms(table, lut.constant_ms))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_interleaved(space: str, batch: int, blocks: int, steps_per_block: int) -> dict:
    steps = {m: make_step(m, space, batch) for m in MODELS}
    for fn in steps.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {m: [] for m in MODELS}
    for b in range(blocks):
        order = MODELS[b % 3:] + MODELS[:b % 3]
        for m in order:
            t0 = time.perf_counter()
            for _ in range(steps_per_block):
                steps[m]()
            times[m].append((time.perf_counter() - t0) / steps_per_block)
    sp, k5, mp = times["single-path"], times["k5e6"], times["multi-path"]
    ratio = lambda a, b: {"median": statistics.median(x / y for x, y in zip(a, b)),  # noqa: E731
                          "min": min(x / y for x, y in zip(a, b)), "max": max(x / y for x, y in zip(a, b))}
    return {"step_s": times, "single_over_k5e6": ratio(sp, k5), "multi_over_single": ratio(mp, sp)}


def peak_memory(model: str, space: str, batch: int, steps: int) -> float:
    """MiB by which ``steps`` steps raise a fresh process's peak resident memory (``--child``)."""
    done = subprocess.run([sys.executable, __file__, "--child", model, space, str(batch), str(steps)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    """This process's peak resident memory. /proc's VmHWM starts afresh at exec; ru_maxrss does not
    (Linux carries the parent's high-water mark into a child started from a large parent)."""
    try:
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(model: str, space: str, batch: int, steps: int) -> None:
    step = make_step(model, space, batch)
    before = peak_rss_mib()
    for _ in range(steps):
        step()
    print(peak_rss_mib() - before)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs=2, metavar=("SMALL", "IMAGENET"), default=(64, 8))
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--steps-per-block", type=int, default=2)
    p.add_argument("--out", default="bench/results/search_cost.json")
    args = p.parse_args()
    results = []
    for space, batch in (("small", args.batch[0]), ("imagenet", args.batch[1])):
        r = {"space": space, "batch": batch, "threads": torch.get_num_threads(),
             **time_interleaved(space, batch, args.blocks, args.steps_per_block),
             "peak_mib_over_start": {m: peak_memory(m, space, batch, 3) for m in MODELS}}
        med = {m: statistics.median(v) for m, v in r["step_s"].items()}
        if space == "imagenet":
            r["paper_search_projected_h"] = {m: PAPER_SEARCH_STEPS * PAPER_GLOBAL_BATCH / batch * med[m] / 3600
                                            for m in ("single-path", "multi-path")}
        q1, q2 = r["single_over_k5e6"], r["multi_over_single"]
        print(f"{space:8s} batch {batch:3d}: step s single-path {med['single-path']:.3f}, k5e6 {med['k5e6']:.3f}, "
              f"multi-path {med['multi-path']:.3f}; single/k5e6 {q1['median']:.3f} ({q1['min']:.3f}-{q1['max']:.3f}), "
              f"multi/single {q2['median']:.2f} ({q2['min']:.2f}-{q2['max']:.2f}); peak MiB over start "
              + ", ".join(f"{m} {v:.0f}" for m, v in r["peak_mib_over_start"].items()), flush=True)
        results.append(r)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
