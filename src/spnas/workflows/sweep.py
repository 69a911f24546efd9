"""``spnas sweep``: searched nets at several latency targets (or several values of one other budget:
parameters, MACs, peak activation memory) against the uniform nets, over seeds.

The stages, each recorded in ``pipeline.json`` like ``spnas run``'s (so the same command resumes):
the latency table; the targets (given, or spread between the fastest and slowest uniform nets); one
shared warm-up, branched to every target (:mod:`spnas.search.branch`); every searched net and every
uniform baseline trained with the same recipe once per seed; one interleaved measurement of all of
them; the report (:mod:`spnas.workflows.sweep_report`).
"""

from __future__ import annotations

import math
from functools import cached_property
from dataclasses import dataclass
from pathlib import Path

from spnas.model.arch import Architecture, uniform
from spnas.model.costs import UNITS, cost_tables
from spnas.errors import SpnasError
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.workflows.pipeline import Pipeline, PipelineOptions, open_pipeline
from spnas.jobs.runs import CHECKPOINT
from spnas.search.branch import branch_search, warmup_steps
from spnas.search.landing import DEFAULT_SHARE as LANDING_SHARE
from spnas.search.methods import METHODS
from spnas.workflows.sweep_report import write_sweep_report

#: the uniform nets of the sweep's front
UNIFORM_OPS = ("k3e3", "k5e3", "k3e6", "k5e6")
MAX_POINTS = 12
#: what a sweep may sweep: the latency target, or one budget beside a fixed latency target
AXES = ("latency", "params", "macs", "memory")
DEFAULT_METHOD = "single-path"
#: sweep methods that are a search method with other settings; each shares its base method's warm-up. Each
#: says its whole landing: a warm-up made before --landing existed resumes without it (its config lacks
#: the key), and a branch inherits what the settings do not say
VARIANTS = {"single-path-repair": ("single-path", {"landing": 0.0}),  # before landing was the default
            "single-path-landing-first": ("single-path", {"landing": LANDING_SHARE, "landing_rule": "first"}),
            "single-path-landing-last": ("single-path", {"landing": LANDING_SHARE, "landing_rule": "last"})}
METHOD_NAMES = (*METHODS, "random", *VARIANTS)


@dataclass(frozen=True)
class SweepOptions:
    run: PipelineOptions
    #: latency targets in ms; None: ``points`` of them between the fastest and slowest uniform nets
    targets: tuple[float, ...] | None = None
    points: int = 4
    seeds: tuple[int, ...] = (0, 1)
    #: search methods, each searched at every target once per search seed
    methods: tuple[str, ...] = (DEFAULT_METHOD,)
    search_seeds: tuple[int, ...] = (0,)
    #: what ``targets`` are values of: latency (ms), or params, macs or memory (--max-params ... of each
    #: search, all searching at one latency target: --target-ms, or the slowest uniform net's)
    budget: str = "latency"

    def check(self) -> None:
        if self.budget not in AXES:
            raise SpnasError(f"--budget must be one of: {', '.join(AXES)}, got {self.budget!r}")
        unknown = [m for m in self.methods if m not in METHOD_NAMES]
        if not self.methods or unknown or len(set(self.methods)) != len(self.methods):
            raise SpnasError(f"--methods must be distinct names among {', '.join(METHOD_NAMES)}, got "
                             f"{list(self.methods)}")
        if not self.search_seeds or len(set(self.search_seeds)) != len(self.search_seeds) or min(self.search_seeds) < 0:
            raise SpnasError(f"--search-seeds must be distinct non-negative integers, got {list(self.search_seeds)}")
        if self.targets is not None:
            if not self.targets or not all(math.isfinite(t) and t > 0 for t in self.targets):
                unit = "ms" if self.budget == "latency" else UNITS[self.budget]
                raise SpnasError(f"--targets must be positive numbers of {unit}, got {list(self.targets)}")
            if len(set(self.targets)) != len(self.targets):
                raise SpnasError(f"--targets lists a target twice: {list(self.targets)}")
        if not 1 <= self.points <= MAX_POINTS:
            raise SpnasError(f"--points must be 1 to {MAX_POINTS}, got {self.points}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise SpnasError(f"--seeds must be distinct non-negative integers, got {list(self.seeds)}")


def run_sweep(options: SweepOptions) -> dict:
    options.check()
    if options.run.target_ms is not None and options.budget == "latency":
        raise SpnasError("spnas sweep takes --targets or --points, not --target-ms (which fixes the latency target of "
                         "a sweep over --budget params, macs or memory)")
    swept = getattr(options.run, f"max_{options.budget}", None) if options.budget != "latency" else None
    if swept is not None:
        raise SpnasError(f"--budget {options.budget} sweeps --max-{options.budget} itself; give its values as --targets")
    with open_pipeline(options.run, "sweep") as pipeline:
        return Sweep(pipeline, options).run()


def spread_targets(lut: LatencyTable, space, points: int) -> tuple[float, ...]:
    """``points`` latency targets evenly inside (fastest uniform net, slowest uniform net), predicted."""
    return _evenly_inside([predict_ms(lut, uniform(space, op)) for op in UNIFORM_OPS], points, 4)


def spread_budgets(space, measure: str, points: int, precision: str) -> tuple[float, ...]:
    """``points`` values of a budget evenly inside (cheapest uniform net, dearest uniform net), whole units."""
    table = cost_tables(space, precision)[measure]
    return _evenly_inside([table.of(uniform(space, op).ops) for op in UNIFORM_OPS], points, 0)


def _evenly_inside(values: list[float], points: int, digits: int) -> tuple[float, ...]:
    """``points`` values splitting (min, max) of ``values`` into equal steps, rounded to ``digits``."""
    low, high = min(values), max(values)
    return tuple(float(round(low + (high - low) * (i + 1) / (points + 1), digits)) for i in range(points))


def searched_name(target: float, method: str = DEFAULT_METHOD, search_seed: int = 0, budget: str = "latency") -> str:
    """``searched-0.400ms`` (or ``searched-120000params`` when sweeping a budget), with ``-METHOD`` and
    ``-sSEED`` where they are not the defaults."""
    point = f"{target:.3f}ms" if budget == "latency" else f"{target:.0f}{budget}"
    return f"searched-{point}{_variant(method, search_seed)}"


def _variant(method: str, search_seed: int) -> str:
    return (f"-{method}" if method != DEFAULT_METHOD else "") + (f"-s{search_seed}" if search_seed else "")


@dataclass
class Sweep:
    pipeline: Pipeline
    options: SweepOptions

    def run(self) -> dict:
        p, o = self.pipeline, self.options
        p.stage("lut", p.make_lut)
        lut = LatencyTable.load(p.lut_path)
        lut.check(p.space, str(p.lut_path))
        # a sweep started before --budget existed swept latency
        axis = p.stage("budget", lambda: "latency" if "targets" in p.state["stages"] else o.budget)
        if axis != o.budget:
            raise SpnasError(f"{p.run_dir}: this sweep sweeps --budget {axis}, not {o.budget}; choose another --out "
                             "or pass --force")
        spread = ((lambda: spread_targets(lut, p.space, o.points)) if axis == "latency"
                  else lambda: spread_budgets(p.space, axis, o.points, p.options.precision))
        targets = self.recorded("targets", o.targets, spread)
        latency_target = None if axis == "latency" else self.pipeline.stage(
            "latency_target", lambda: p.options.target_ms or max(predict_ms(lut, uniform(p.space, op)) for op in UNIFORM_OPS))
        seeds = self.recorded("seeds", o.seeds)
        methods = self.recorded("methods", o.methods)
        search_seeds = self.recorded("search_seeds", o.search_seeds)
        searched = [(method, seed, target) for method in methods for seed in search_seeds for target in targets]
        origin = {searched_name(t, m, s, axis): {"method": m, "search_seed": s, "point": t} for m, s, t in searched}
        models = {searched_name(t, m, s, axis): self.search(m, s, t, targets[0], axis, latency_target)["arch"]
                  for m, s, t in searched}
        models.update({f"uniform-{op}": uniform(p.space, op).to_string() for op in UNIFORM_OPS})
        self.train_all(models, seeds)
        first = {name: f"train:{name}:seed{seeds[0]}" for name in models}  # one export per architecture
        measure_stage = p.stage("measure", lambda: p.measure(list(models), first)) if p.measured_here else None
        measured = p.measured_models(measure_stage)
        summary = {"preset": p.options.preset, "data": p.data_name, "space": p.space.to_dict(),
                   "latency_backend": lut.backend, "latency": "measured" if measured else "predicted",
                   "budget": axis, "budget_unit": "ms" if axis == "latency" else UNITS[axis],
                   "points": list(targets), "targets_ms": list(targets) if axis == "latency" else [latency_target],
                   "seeds": list(seeds), "methods": list(methods),
                   "search_seeds": list(search_seeds), "lut": p.state["stages"]["lut"],
                   "warmup_steps": self.warm_steps, "epochs": p.epochs, "threads": p.backend.threads,
                   "processes": p.nproc, "models": self.rows(lut, models, origin, seeds, measured, axis),
                   "measurement_conditions": (measure_stage or {}).get("conditions", {})}
        return write_sweep_report(p.run_dir, summary, p.space.num_classes)

    def train_all(self, models: dict[str, str], seeds: tuple[int, ...]) -> None:
        """Every network once per seed. Two searches that found the same network (the same canonical
        architecture) share its trainings: the same recipe and seed would train it to the same weights,
        so the second one's stage records the first's result and says so (``same_as``)."""
        p, done = self.pipeline, {}
        for name, arch in models.items():
            for seed in seeds:
                stage, key = f"train:{name}:seed{seed}", (Architecture.from_string(arch).canonical(), seed)
                if key in done and stage not in p.state["stages"]:
                    p.stage(stage, lambda first=done[key]: {**p.state["stages"][first], "same_as": first})
                    continue
                p.stage(stage, lambda n=name, a=arch, s=seed: p.train(n, a, s, out=p.run_dir / "train" / n / f"seed{s}"))
                done.setdefault(key, stage)

    def recorded(self, name: str, given: tuple | None, default=None) -> tuple:
        """A setting fixed when the sweep started (``given``, or ``default()``); another one given on a
        resume is refused rather than mixed into this directory."""
        p = self.pipeline
        value = tuple(p.stage(name, lambda: list(given if given is not None else default())))
        if given is not None and tuple(given) != value:
            raise SpnasError(f"{p.run_dir}: this sweep's {name.replace('_', ' ')} are {list(value)}, not "
                             f"{list(given)}; choose another --out or pass --force")
        return value

    def search(self, method: str, seed: int, point: float, first_point: float, axis: str = "latency",
               latency_target: float | None = None) -> dict:
        """One search at ``point`` (its latency target, or the ``axis`` budget beside ``latency_target``):
        random search on its own; the others branched from their shared warm-up."""
        p, name = self.pipeline, searched_name(point, method, seed, axis)
        out = p.run_dir / "search" / name
        base, settings = VARIANTS.get(method, (method, {}))
        target_ms, warmup_target_ms = (point, first_point) if axis == "latency" else (latency_target, latency_target)
        settings = settings if axis == "latency" else {**settings, f"max_{axis}": point}
        origin = {"method": method, "search_seed": seed}  # recorded, so readers need not parse the stage's name
        if base == "random":  # its candidates are drawn in the target's latency band: nothing to share
            return p.stage(f"search:{name}", lambda: {**p.search(target_ms, out, method=base, seed=seed, **settings),
                                                      **origin})
        warm_dir, warm_steps = p.run_dir / "search" / f"warmup{_variant(base, seed)}", self.warm_steps
        p.stage(f"search:warmup{_variant(base, seed)}", lambda: p.search(
            warmup_target_ms, warm_dir, max_steps=warm_steps, method=base, seed=seed))
        return p.stage(f"search:{name}",
                       lambda: {**self.branch(target_ms, warm_dir, out, warm_steps, settings), **origin})

    def rows(self, lut: LatencyTable, models: dict[str, str], origin: dict[str, dict], seeds: tuple[int, ...],
             measured: dict | None, axis: str = "latency") -> list[dict]:
        """One row per network: its latency, its costs, its value on the swept axis (``x``) and its
        accuracy per seed."""
        stages = self.pipeline.state["stages"]
        tables = cost_tables(self.pipeline.space, self.pipeline.options.precision)
        rows = []
        for name, arch in models.items():
            search = stages.get(f"search:{name}")
            arch = Architecture.from_string(arch).canonical()  # sweeps of older versions hold raw encodings
            predicted = predict_ms(lut, arch)
            rows.append({
                "model": name, "kind": "searched" if search else "uniform", "arch": arch.to_string(),
                "method": origin.get(name, {}).get("method"), "search_seed": origin.get(name, {}).get("search_seed"),
                "target_ms": search["target_ms"] if search else None, "predicted_ms": predicted,
                "measured_ms": measured[name]["median"] if measured else None,
                "measured_iqr_ms": measured[name]["iqr"] if measured else None,
                "latency_ms": measured[name]["median"] if measured else predicted,
                "last_step_predicted_ms": search["last_step_predicted_ms"] if search else None,
                "repair_flips": len(search["repair_flips"]) if search else None,
                "landed_step": search.get("landed_step") if search else None,
                "landed_within_step": search.get("landed_within_step") if search else None,
                "search_warnings": search.get("warnings", []) if search else [],
                "test_top1_by_seed": {str(seed): stages[f"train:{name}:seed{seed}"]["test_top1"] for seed in seeds},
                "costs": {m: table.of(arch.ops) for m, table in tables.items()},
                "point": origin.get(name, {}).get("point"),
            })
            rows[-1]["x"] = rows[-1]["latency_ms"] if axis == "latency" else rows[-1]["costs"][axis]
        return rows

    @cached_property
    def warm_steps(self) -> int:
        """The warm-up's steps, the same for every method and seed (the preset's data and epochs)."""
        p = self.pipeline
        cfg = p.search_config(1.0, p.run_dir)  # the preset's warm-up fraction and batch
        return warmup_steps(cfg.warmup_fraction, p.epochs["search"], len(p.search_data().train) // cfg.batch_size)

    def branch(self, target_ms: float, warm_dir: Path, out: Path, warm_steps: int, settings: dict) -> dict:
        if not (out / CHECKPOINT).is_file():
            if out.exists():
                raise SpnasError(f"{out}: a search directory without a checkpoint; remove it and run the same "
                                 "command again")
            branch_search(warm_dir, out, target_ms, warm_steps, settings)
        return self.pipeline.search(target_ms, out)
