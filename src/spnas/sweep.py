"""``spnas sweep``: searched nets at several latency targets against the uniform nets, over seeds.

The stages, each recorded in ``pipeline.json`` like ``spnas run``'s (so the same command resumes):
the latency table; the targets (given, or spread between the fastest and slowest uniform nets); one
shared warm-up, branched to every target (:mod:`spnas.search.branch`); every searched net and every
uniform baseline trained with the same recipe once per seed; one interleaved measurement of all of
them; the report (:mod:`spnas.sweep_report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from spnas.arch import Architecture, uniform
from spnas.errors import SpnasError
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.pipeline import Pipeline, PipelineOptions, open_pipeline
from spnas.runs import CHECKPOINT
from spnas.search.branch import branch_search, warmup_steps
from spnas.sweep_report import write_sweep_report

#: the uniform nets of the sweep's front
UNIFORM_OPS = ("k3e3", "k5e3", "k3e6", "k5e6")
MAX_POINTS = 12


@dataclass(frozen=True)
class SweepOptions:
    run: PipelineOptions
    #: latency targets in ms; None: ``points`` of them between the fastest and slowest uniform nets
    targets: tuple[float, ...] | None = None
    points: int = 4
    seeds: tuple[int, ...] = (0, 1)

    def check(self) -> None:
        if self.targets is not None:
            if not self.targets or not all(math.isfinite(t) and t > 0 for t in self.targets):
                raise SpnasError(f"--targets must be positive numbers of ms, got {list(self.targets)}")
            if len(set(self.targets)) != len(self.targets):
                raise SpnasError(f"--targets lists a target twice: {list(self.targets)}")
        if not 1 <= self.points <= MAX_POINTS:
            raise SpnasError(f"--points must be 1 to {MAX_POINTS}, got {self.points}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise SpnasError(f"--seeds must be distinct non-negative integers, got {list(self.seeds)}")


def run_sweep(options: SweepOptions) -> dict:
    options.check()
    if options.run.target_ms is not None:
        raise SpnasError("spnas sweep takes --targets or --points, not --target-ms")
    with open_pipeline(options.run, "sweep") as pipeline:
        return Sweep(pipeline, options).run()


def spread_targets(lut: LatencyTable, space, points: int) -> tuple[float, ...]:
    """``points`` targets evenly inside (fastest uniform net, slowest uniform net), predicted."""
    predicted = [predict_ms(lut, uniform(space, op)) for op in UNIFORM_OPS]
    fast, slow = min(predicted), max(predicted)
    return tuple(round(fast + (slow - fast) * (i + 1) / (points + 1), 4) for i in range(points))


def searched_name(target_ms: float) -> str:
    return f"searched-{target_ms:.3f}ms"


@dataclass
class Sweep:
    pipeline: Pipeline
    options: SweepOptions

    def run(self) -> dict:
        p = self.pipeline
        p.stage("lut", p.make_lut)
        lut = LatencyTable.load(p.lut_path)
        lut.check(p.space, str(p.lut_path))
        targets = tuple(p.stage("targets", lambda: list(self.options.targets or spread_targets(
            lut, p.space, self.options.points))))
        if self.options.targets is not None and tuple(self.options.targets) != targets:
            raise SpnasError(f"{p.run_dir}: this sweep's targets are {list(targets)}, not "
                             f"{list(self.options.targets)}; choose another --out or pass --force")
        seeds = tuple(p.stage("seeds", lambda: list(self.options.seeds)))
        if tuple(self.options.seeds) != seeds:
            raise SpnasError(f"{p.run_dir}: this sweep's seeds are {list(seeds)}, not {list(self.options.seeds)}; "
                             "choose another --out or pass --force")
        warm_dir, warm_steps = p.run_dir / "search" / "warmup", self.warmup_steps()
        p.stage("search:warmup", lambda: p.search(targets[0], warm_dir, max_steps=warm_steps))
        models = {}
        for target in targets:
            name = searched_name(target)
            models[name] = p.stage(f"search:{name}", lambda t=target, n=name: self.branch(
                t, warm_dir, p.run_dir / "search" / n, warm_steps))["arch"]
        models.update({f"uniform-{op}": uniform(p.space, op).to_string() for op in UNIFORM_OPS})
        for name, arch in models.items():
            for seed in seeds:
                p.stage(f"train:{name}:seed{seed}", lambda n=name, a=arch, s=seed: p.train(
                    n, a, s, out=p.run_dir / "train" / n / f"seed{s}"))
        first = {name: f"train:{name}:seed{seeds[0]}" for name in models}  # one export per architecture
        measured = p.stage("measure", lambda: p.measure(list(models), first)) if p.measured_here else None
        summary = {"preset": p.options.preset, "data": p.data_name, "space": p.space.to_dict(),
                   "latency_target": lut.target, "latency": "measured" if measured else "predicted",
                   "targets_ms": list(targets), "seeds": list(seeds), "lut": p.state["stages"]["lut"],
                   "warmup_steps": warm_steps, "epochs": p.epochs, "threads": p.target.threads,
                   "processes": p.nproc, "models": self.rows(lut, models, seeds, measured)}
        return write_sweep_report(p.run_dir, summary, p.space.num_classes)

    def rows(self, lut: LatencyTable, models: dict[str, str], seeds: tuple[int, ...],
             measured: dict | None) -> list[dict]:
        """One row per network: its latency, and its accuracy per seed."""
        stages = self.pipeline.state["stages"]
        rows = []
        for name, arch in models.items():
            search = stages.get(f"search:{name}")
            predicted = predict_ms(lut, Architecture.from_string(arch))
            rows.append({
                "model": name, "kind": "searched" if search else "uniform", "arch": arch,
                "target_ms": search["target_ms"] if search else None, "predicted_ms": predicted,
                "measured_ms": measured[name]["median"] if measured else None,
                "measured_iqr_ms": measured[name]["iqr"] if measured else None,
                "latency_ms": measured[name]["median"] if measured else predicted,
                "last_step_predicted_ms": search["last_step_predicted_ms"] if search else None,
                "repair_flips": len(search["repair_flips"]) if search else None,
                "test_top1_by_seed": {str(seed): stages[f"train:{name}:seed{seed}"]["test_top1"] for seed in seeds},
            })
        return rows

    def warmup_steps(self) -> int:
        p = self.pipeline
        cfg = p.search_config(1.0, p.run_dir)
        return warmup_steps(cfg.warmup_fraction, p.epochs["search"], len(p.search_data().train) // cfg.batch_size)

    def branch(self, target_ms: float, warm_dir: Path, out: Path, warm_steps: int) -> dict:
        if not (out / CHECKPOINT).is_file():
            if out.exists():
                raise SpnasError(f"{out}: a search directory without a checkpoint; remove it and run the same "
                                 "command again")
            branch_search(warm_dir, out, target_ms, warm_steps)
        return self.pipeline.search(target_ms, out)
