"""Cost of the divergence checks per training step: the same step with and without them, interleaved.

The checks add one reduction over all gradients (their norm) and read the loss; this measures what
that costs against a whole forward/backward/optimizer step, in one process, alternating blocks of
steps so that drift of the machine's speed hits both sides alike.

    python3 bench/guard_overhead.py --out bench/results/guard_overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from spnas.model.arch import uniform
from spnas.jobs.divergence import DivergenceGuard
from spnas.latency.lut import LatencyTable, lut_from_stats
from spnas.latency.parts import layer_key
from spnas.latency.predict import differentiable_ms
from spnas.nn.network import SinglePathNet
from spnas.jobs.optim import make_optimizer
from spnas.search.objective import regularisers
from spnas.model.space import MBCONV_OPS, SearchSpace, get_space


def flat_lut(space: SearchSpace) -> LatencyTable:
    """A table of equal entries: its values do not change the time of a step, only its existence does."""
    stats = {k: {"median": 0.1, "iqr": 0.0} for k in ("overhead", "prefix", "suffix")}
    stats.update({layer_key(l.index, op): {"median": 0.1, "iqr": 0.0} for l in space.layers() for op in MBCONV_OPS})
    info = {"backend": "none", "runtime": "none", "runtime_version": "-", "threads": 1}
    return lut_from_stats(space, stats, info, {})


def make_step(kind: str, guarded: bool, batch: int):
    space = get_space("small", width=0.5)  # the quick preset's shapes: 28x28x1, 10 classes
    torch.manual_seed(0)
    net = SinglePathNet(space) if kind == "search" else SinglePathNet(space, uniform(space, "k5e6"))
    optimizer = make_optimizer("tf-rmsprop" if kind == "search" else "sgd", net.parameters(), 0.01)
    lut = flat_lut(space)
    guard = DivergenceGuard(Path("."), 10**9, space.num_classes, "bench")
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step(i: int) -> None:
        logits = net(x)
        if kind == "search":
            latency = differentiable_ms(lut, net.indicators())
            reg = regularisers(net, latency, 0.02, 1e-5)
            ce = F.cross_entropy(logits, y, label_smoothing=0.1)
            total = ce + reg.total
            if guarded:
                guard.check_loss(i, ce, total, latency_ms=latency, runtime=reg.runtime, lam=0.02)
        else:
            ce = total = F.cross_entropy(logits, y, label_smoothing=0.1)
            if guarded:
                guard.check_loss(i, ce, total)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if guarded:
            guard.check_gradients(i, net)
        optimizer.step()

    return step


def machine_meta() -> dict:
    """What the figures were measured on: the CPU model as /proc/cpuinfo names it, torch, threads."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}


def write_results(out: str, results: list, **meta) -> None:
    """The benchmark's JSON: what it ran on (:func:`machine_meta` and ``meta``) and its results."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"meta": {**machine_meta(), **meta}, "results": results}, indent=2) + "\n")
    print(f"wrote {out}")


def measure(kind: str, batch: int, blocks: int, steps_per_block: int) -> dict:
    steps = {guarded: make_step(kind, guarded, batch) for guarded in (False, True)}
    for fn in steps.values():  # warm-up
        for i in range(3):
            fn(i)
    times: dict[bool, list[float]] = {False: [], True: []}
    for b in range(blocks):
        for guarded in ((False, True) if b % 2 == 0 else (True, False)):
            t0 = time.perf_counter()
            for i in range(steps_per_block):
                steps[guarded](i)
            times[guarded].append((time.perf_counter() - t0) / steps_per_block * 1000)
    ratios = [g / p for g, p in zip(times[True], times[False])]
    return {"kind": kind, "batch": batch, "blocks": blocks, "steps_per_block": steps_per_block,
            "plain_ms_per_step": times[False], "guarded_ms_per_step": times[True],
            "ratio_guarded_over_plain": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--blocks", type=int, default=10)
    p.add_argument("--steps-per-block", type=int, default=10)
    p.add_argument("--out", default="bench/results/guard_overhead.json")
    args = p.parse_args()
    results = [measure(kind, args.batch, args.blocks, args.steps_per_block) for kind in ("train", "search")]
    for r in results:
        q = r["ratio_guarded_over_plain"]
        print(f"{r['kind']:6s} plain {statistics.median(r['plain_ms_per_step']):7.1f} ms/step  guarded "
              f"{statistics.median(r['guarded_ms_per_step']):7.1f} ms/step  ratio median {q['median']:.3f} "
              f"(min {q['min']:.3f}, max {q['max']:.3f}) over {r['blocks']} block pairs")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
