"""The search loop: one supernet, one optimiser, one loss, one pass over the schedule (SPEC §5).

Read top to bottom: set-up and resume, the steps, the result (in :func:`_search`); one step and one
epoch end are :class:`SearchSteps`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from spnas.model.arch import Architecture
from spnas.data.datasets import DataSplits
from spnas.data.loader import eval_source
from spnas.jobs.divergence import DivergenceGuard
from spnas.jobs.engine import GlobalBatchStep, run_steps
from spnas.errors import SpnasError
from spnas.jobs.evaluate import accuracy, recalibrated_batchnorm
from spnas.outputs.files import write_json
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import differentiable_ms, lut_tensor, op_mixture, predict_ms
from spnas.model.costs import arch_costs
from spnas.search.budgets import Budgets, bound_by
from spnas.nn.network import SinglePathNet
from spnas.nn.superkernel import GROUPS, Decision
from spnas.jobs.optim import L2Term, make_optimizer, staircase_schedule
from spnas.jobs.job import Job
from spnas.jobs.runs import METRICS, MetricsLog, read_metrics, resumed_config
from spnas.search.branch import warmup_steps
from spnas.search.config import SearchConfig
from spnas.search.diagnostics import Diagnosis, diagnose, plot_decisions
from spnas.search.landing import Landing, path_within_step
from spnas.search.repair import architecture_of, canonical_price
from spnas.search.objective import TargetController, runtime_term
from spnas.search.plots import plot_search_progress
from spnas.search.methods import METHODS, MultiPath, SinglePath
from spnas.search.random_search import CandidateTraining, draw_candidates
from spnas.model.space import SearchSpace, space_for_data


@dataclass
class SearchResult:
    """What a search found, in canonical form (skips last in their stage, :meth:`Architecture.canonical`),
    priced as such; ``encoding`` keeps the search's own (the paper's; also in its metrics log)."""

    arch: Architecture
    predicted_ms: float
    run_dir: Path
    wall_s: float
    #: the hard decisions at the last step, before any budget repair, and the repair's flips
    last_step: Architecture
    last_step_ms: float
    repair_flips: list
    encoding: Architecture
    #: how the decisions evolved, and warnings (None for random search, which has no decisions)
    diagnosis: Diagnosis | None = None

    @classmethod
    def of(cls, raw: Architecture, raw_last_step: Architecture, lut: LatencyTable, run_dir: Path, wall_s: float,
           repair_flips: list) -> "SearchResult":
        arch, last = raw.canonical(), raw_last_step.canonical()
        return cls(arch, predict_ms(lut, arch), run_dir, wall_s, last, predict_ms(lut, last), repair_flips, raw)


def load_lut_for(space: SearchSpace, path: str | None) -> LatencyTable:
    if path is None:
        raise SpnasError("no latency table: pass --lut FILE (make one with "
                         f"'spnas latency profile --space {space.name} --out lut.json')")
    lut = LatencyTable.load(path)
    lut.check(space, path)
    return lut


def run_search(cfg: SearchConfig, resume_dir: str | None = None, force: bool = False,
               overrides: dict | None = None, data: DataSplits | None = None) -> SearchResult:
    """Search into a new run directory, or resume ``resume_dir`` (``overrides``: the options given
    with ``--resume``; only :data:`~spnas.jobs.jobconfig.RESUME_OPTIONS` may change). Under torchrun every
    rank calls this; rank 0 writes the files."""
    if resume_dir is not None:
        cfg = resumed_config(SearchConfig, Path(resume_dir), overrides or {})
    else:
        cfg.check()
    job = Job.prepare(cfg, resume_dir, force, data)
    space = space_for_data(cfg.space, job.data, cfg.width)
    lut = load_lut_for(space, cfg.lut)  # refused before any training starts
    budgets = Budgets.of(cfg, space, lut.precision)  # likewise a budget no network meets (memory: the table's bytes)
    with job.directory(force=force):
        return (_random_search if cfg.method == "random" else _search)(job, space, lut, budgets)


def _search(job: Job, space: SearchSpace, lut: LatencyTable, budgets: Budgets) -> SearchResult:
    cfg, data, precision, run_dir = job.cfg, job.data, job.precision, job.run_dir
    torch.manual_seed(cfg.seed)
    source = job.train_source()
    steps_per_epoch, total = source.steps_per_epoch, cfg.epochs * source.steps_per_epoch
    warm_steps = warmup_steps(cfg.warmup_fraction, cfg.epochs, steps_per_epoch)
    method = METHODS[cfg.method]
    net = precision.prepare(method.build(space, cfg))
    optimizer = make_optimizer(cfg.optimizer, net.parameters(), cfg.lr)
    schedule = staircase_schedule(optimizer, steps_per_epoch, cfg.lr_decay, cfg.lr_decay_epochs)
    controller = (TargetController(cfg.target_ms, cfg.lambda_, cfg.target_margin, cfg.lambda_rate,
                                   cfg.lambda_gain)
                  if cfg.target_ms else None)
    landing = (Landing.for_run(cfg.target_ms, cfg.target_margin, cfg.landing, total, warm_steps, cfg.landing_rule)
               if controller and method.lands and cfg.landing > 0 else None)
    parts = {"model": net, "optimizer": optimizer, "schedule": schedule, "controller": controller,
             "precision": precision, "landing": landing, "budgets": budgets or None}
    start, wall_before = job.restore(parts, "search")
    guard = job.guard(total, f"--lr-per-256 {cfg.lr_per_256:g}, LR {cfg.lr:g} at batch {cfg.batch_size}", start, net)
    one_step = GlobalBatchStep(job.forward_model(net), net, optimizer, precision,
                               job.replicas, job.num_parts, cfg.label_smoothing, L2Term.of(net, cfg.weight_decay))
    table = lut_tensor(lut, precision.device)
    log = job.metrics_log(start)
    val = eval_source(data, data.val, device=precision.device, decode=cfg.decode)

    loop = SearchSteps(job, method, net, lut, table, controller, landing, source, one_step, schedule, guard, log,
                       val, warm_steps, steps_per_epoch, total, budgets)
    try:
        run_steps(start=start, total=total, steps_per_epoch=steps_per_epoch, desc="search", step=loop.step,
                  epoch_end=loop.epoch_end, save=lambda step: (loop.flush(), job.checkpoint(step, parts, "search", guard,
                                                                                            wall_before)),
                  max_steps=cfg.max_steps, checkpoint_s=cfg.checkpoint_minutes * 60,
                  resume_hint=f"spnas search --resume {run_dir}", replicas=job.replicas,
                  images_per_step=cfg.batch_size)
    finally:
        log.close()

    last_step = net.architecture()
    # a landing's decisions are the result as they are (rule first: the frozen last step's own)
    arch, flips = (landing.landed, []) if landing and landing.landed else method.result(net, lut, cfg, budgets)
    wall = job.wall_s(wall_before)
    result = SearchResult.of(arch, last_step, lut, run_dir, wall, flips)
    if not job.replicas.main:
        return result
    records = read_metrics(run_dir / METRICS)
    result.diagnosis = diagnose(records, space, total, warm_steps, steps_per_epoch, cfg.target_ms, arch.ops,
                                cfg.indicator_scale, last_step_ms=result.last_step_ms)  # priced as the result is
    _save_result(job, space, lut, result, budgets, lambda_=float(controller.lam) if controller else cfg.lambda_,
                 steps=total,
                 landing=landing.state_dict() if landing else None,
                 controller=controller.state_dict() if controller else None,
                 diagnostics=result.diagnosis.to_dict(), warnings=result.diagnosis.warnings, **method.state(net))
    plot_search_progress(run_dir / METRICS, run_dir / "progress.png", space, cfg.target_ms, warm_steps)
    plot_decisions(records, run_dir / "decisions.png", result.diagnosis, steps_per_epoch)
    return result


def _save_result(job: Job, space: SearchSpace, lut: LatencyTable, result: SearchResult, budgets: Budgets,
                 **extra) -> None:
    """arch.json (what ``spnas train`` takes; no wall times, so that a ``--deterministic`` rerun writes
    the same bytes) and summary.json, for every method: with the result's cost in every budget and
    which of them bound it (the one nearest its limit)."""
    cfg, arch = job.cfg, result.arch
    limits = budgets.report(arch.ops)
    used = {m: b["used"] for m, b in limits.items()}
    if cfg.target_ms:
        used["latency"] = result.predicted_ms / cfg.target_ms
    arch.save(job.run_dir / "arch.json", predicted_ms=result.predicted_ms,
              predicted_raw_ms=predict_ms(lut, arch, calibrated=False), target_ms=cfg.target_ms,
              lambda_=extra.get("lambda_"), lut=cfg.lut, lut_backend=lut.backend,
              space_def=space.to_dict(), last_step_arch=result.last_step.to_string(),
              last_step_predicted_ms=result.last_step_ms, repair_flips=result.repair_flips, method=cfg.method,
              search_encoding=result.encoding.to_string())
    write_json(job.run_dir / "summary.json", {
        "arch": arch.to_string(), "search_encoding": result.encoding.to_string(), "predicted_ms": result.predicted_ms,
        "target_ms": cfg.target_ms,
        "last_step_arch": result.last_step.to_string(), "last_step_predicted_ms": result.last_step_ms,
        "repair_flips": result.repair_flips, "wall_s": result.wall_s, "method": cfg.method,
        "costs": arch_costs(space, arch.ops), "budgets": limits, "bound_by": bound_by(used),
        **{k: v for k, v in extra.items() if k != "lambda_"}})


def _random_search(job: Job, space: SearchSpace, lut: LatencyTable, budgets: Budgets) -> SearchResult:
    """See :mod:`spnas.search.random_search`."""
    cfg, precision, run_dir = job.cfg, job.precision, job.run_dir
    torch.manual_seed(cfg.seed)
    source = job.train_source()
    budget = cfg.epochs * source.steps_per_epoch  # what the single-path search of this config steps
    proxy_steps = budget // cfg.candidates
    if proxy_steps < 1:
        raise SpnasError(f"--candidates {cfg.candidates} is more than the {budget} steps of the search budget")
    candidates = draw_candidates(space, lut, cfg.candidates, cfg.seed, cfg.target_ms, cfg.target_margin, budgets.fits)
    total = proxy_steps * cfg.candidates
    training = CandidateTraining(job, space, lut, candidates, proxy_steps, source,
                                 eval_source(job.data, job.data.val, device=precision.device, decode=cfg.decode),
                                 log=None, guard=None)
    parts = {"random_search": training, "precision": precision}
    start, wall_before = job.restore(parts, "search")
    training.guard = guard = job.guard(total, f"--lr-per-256 {cfg.lr_per_256:g}, LR {cfg.lr:g}", start,
                                       getattr(training, "net", None))  # a resumed candidate's (start sets it)
    training.log = log = job.metrics_log(start)
    try:
        run_steps(start=start, total=total, steps_per_epoch=proxy_steps, desc="random search", step=training.step,
                  epoch_end=training.epoch_end,
                  save=lambda step: job.checkpoint(step, parts, "search", guard, wall_before),
                  max_steps=cfg.max_steps, checkpoint_s=cfg.checkpoint_minutes * 60,
                  resume_hint=f"spnas search --resume {run_dir}", replicas=job.replicas,
                  images_per_step=cfg.batch_size)
    finally:
        log.close()
    best = Architecture.from_string(training.best()["arch"])
    result = SearchResult.of(best, best, lut, run_dir, job.wall_s(wall_before), [])
    if job.replicas.main:
        _save_result(job, space, lut, result, budgets, steps=total, budget_steps=budget, proxy_steps=proxy_steps,
                     candidates=training.results)
    return result


@dataclass
class SearchSteps:
    """One search step and one epoch end (what :func:`~spnas.jobs.engine.run_steps` calls), with what they
    need; built once by the job.

    A step reads nothing from the device unless it writes a log line or lies in the landing window
    (then once): its hard decisions, the controller's lambda and the divergence checks stay on the device,
    and the decisions of the steps in between are compared (for the flips the diagnostics count) when
    they are next read, at a logged step, an epoch end or a checkpoint (:meth:`flush`).
    """

    job: Job
    method: SinglePath | MultiPath
    net: SinglePathNet
    lut: LatencyTable
    table: torch.Tensor
    controller: TargetController | None
    landing: Landing | None
    source: Any
    one_step: GlobalBatchStep
    schedule: Any
    guard: DivergenceGuard
    log: MetricsLog
    val: Any
    warmup_steps: int
    steps_per_epoch: int
    total: int
    budgets: Budgets = field(default_factory=Budgets)
    #: the hard decisions after the last step compared (at a resume: the checkpoint's), to log each flip
    previous_ops: tuple[str, ...] = ()
    #: the previous step's decisions and margins, for the path of a step in the landing window
    previous_decisions: list[Decision] = field(default_factory=list)
    previous_margins: list[dict] = field(default_factory=list)
    #: (step, (layers, 3) decisions on the device) of the steps not yet compared with their predecessors
    pending: list[tuple[int, torch.Tensor]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.landing and self.landing.frozen:  # a resume after the decisions were frozen
            self.net.freeze(self.landing.landed)
        self.previous_ops = self.net.architecture().ops
        if self.landing and self.landing.open_at(self.landing.start_step):
            self.previous_decisions, self.previous_margins = self.net.decisions(), self.net.decision_margins()
        # the controller prices the hard decisions on the device, in float64 (the table's own sum, as
        # predict_ms adds it: equal for 0/1 decisions, see latency.predict)
        self._table64 = self.table.double() if self.controller else None

    def step(self, step: int) -> dict | None:
        cfg, net, lut, guard = self.job.cfg, self.net, self.lut, self.guard
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        warm = step < self.warmup_steps
        net.train()
        self.method.begin_step(net, cfg, warm, step / self.steps_per_epoch)
        lam = 0.0 if warm else (self.controller.lam if self.controller else cfg.lambda_)
        terms: list[tuple[torch.Tensor, ...]] = []  # (latency, runtime term, with the budgets' terms) of each part

        def regulariser() -> torch.Tensor:  # after the part's forward pass: its indicators
            latency = self.method.latency_ms(net, lut, self.table, cfg)
            runtime = runtime_term(latency, lam)
            term = runtime + self.budgets.term(self.method.op_weights(net)) if self.budgets and not warm else runtime
            terms.append((latency, runtime, term))
            return term

        stats = self.one_step(step, lambda part: self.source.batch(epoch, in_epoch, part, self.job.num_parts),
                              step_seed=cfg.seed * 1_000_003 + step, regulariser=regulariser)
        latency, runtime, regularisers = terms[-1]
        guard.record(step, stats, latency_ms=latency, runtime=regularisers, lam=lam)
        self.schedule.step()

        state = self.method.decision_state(net)
        if self.controller and not warm:
            self.controller.update(differentiable_ms(lut, state["decisions"].double(), table=self._table64))
        if self.budgets and not warm:
            self.budgets.update(op_mixture(state["decisions"]))
        self.pending.append((step, state["decisions"]))
        window = self.landing is not None and self.landing.open_at(step + 1)  # from the step before it
        logged = step % cfg.log_every == 0 or step + 1 == self.total
        if not (window or logged):
            return None
        compared, margin_rows = self._take_pending(state["margins"] if window else None)
        decisions = compared[-1][1]
        arch = Architecture(net.space.name, tuple(d.op for d in decisions))
        if window:
            margins = [dict(zip(GROUPS, row)) for row in margin_rows]
            if self.landing.open_at(step):
                self.land(step, arch, decisions, margins)
                self.hold(step)
            self.previous_decisions, self.previous_margins = decisions, margins
        self._log_flips(compared)
        if self.landing and self.landing.frozen_at == step:
            # frozen at this step: the next step's decisions are the held ones, a change the "held"
            # record logs; the flips count what the thresholds decided
            self.previous_ops = self.landing.landed.ops
        if not logged:
            return None
        guard.verify()
        values = stats.read(runtime_term=runtime, lam=lam,
                            **{f"lambda_{b.measure}": b.controller.lam for b in self.budgets.items})
        hard_ms = predict_ms(lut, arch)
        self.log.write({
            "step": step, "epoch": step / self.steps_per_epoch, "loss": values["loss"], "ce": values["ce"],
            "l2": values["l2"], "runtime_term": values["runtime_term"], "predicted_ms": hard_ms,
            "lambda": values["lam"], "lr": self.schedule.get_last_lr()[0], "grad_norm": values["grad_norm"],
            "warmup": warm, "batch_acc": values["batch_acc"], "ops": list(arch.ops), **self.method.state(net),
            **({"budgets": {m: {"value": v, "lambda": values[f"lambda_{m}"]} for m, v in
                            self.budgets.values(arch.ops).items()}} if self.budgets else {}),
        })
        return {"ce": f"{values['ce']:.3f}", "ms": f"{hard_ms:.3f}", "lam": f"{values['lam']:.3g}"}

    def _take_pending(self, extra: torch.Tensor | None = None) -> tuple[list[tuple[int, list[Decision]]], list]:
        """The pending steps' decisions (and ``extra``, a (layers, 3) tensor), read in one transfer."""
        tensors = [d for _, d in self.pending] + ([extra] if extra is not None else [])
        if not tensors:
            return [], []
        values = torch.stack(tensors).tolist()
        compared = [(s, [Decision(*(int(v) for v in row)) for row in rows])
                    for (s, _), rows in zip(self.pending, values)]
        self.pending = []
        return compared, (values[-1] if extra is not None else [])

    def _log_flips(self, compared: list[tuple[int, list[Decision]]]) -> None:
        """A record for every step whose decisions differ from its predecessor's (the diagnostics count
        every flip exactly, not only those at logged steps)."""
        for step, decisions in compared:
            ops = tuple(d.op for d in decisions)
            flipped = [i for i, (a, b) in enumerate(zip(self.previous_ops, ops)) if a != b]
            if flipped:
                self.log.write({"step": step, "flipped": flipped})
            self.previous_ops = ops

    def flush(self) -> None:
        """Log the flips of the steps since the last read and check them for divergence (before an epoch
        end's record and before a checkpoint, so both see every step before them)."""
        self._log_flips(self._take_pending()[0])
        self.guard.verify()

    def land(self, step: int, arch: Architecture, decisions: list[Decision], margins: list[dict]) -> None:
        """Land on the step's decisions, or a point of its path (:func:`path_within_step`), if in band."""
        price = partial(canonical_price, self.lut, self.net.space.name)  # what a result would report
        path = [(architecture_of(self.net.space.name, d), price(d)) for d in
                path_within_step(self.previous_decisions, decisions, self.previous_margins, margins)]
        landed = self.landing.update(step, arch, price(decisions), path, fits=self.budgets.fits)
        if landed:
            self.log.write({"step": step, "landed": landed.to_string(), "within_step": self.landing.within_step,
                            "rule": self.landing.rule,
                            "landed_ms": predict_ms(self.lut, landed.canonical())})

    def hold(self, step: int) -> None:
        """Freeze the landed decisions where the rule says so (first: at its landing; hold: from its hold
        step): the remaining steps train that one network."""
        held = self.landing.freeze_now(step)
        if held:
            self.net.freeze(held)
            self.log.write({"step": step, "held": held.to_string(), "landed_step": self.landing.step,
                            "rule": self.landing.rule})

    def epoch_end(self, step: int) -> str | None:
        self.flush()
        if not self.job.replicas.main:  # the others go on to the next step and wait for rank 0 there
            return None
        started = time.monotonic()
        arch = self.net.architecture()
        record = {"step": step, "epoch_end": step // self.steps_per_epoch + 1,
                  "predicted_ms": predict_ms(self.lut, arch), "arch": arch.to_string()}
        if self.job.cfg.eval_every_epoch and len(self.job.data.val):
            with recalibrated_batchnorm(self.net, self.source) as calibrated:  # see its docstring: dropout vs BN
                record["val_acc"] = accuracy(calibrated, self.val)
            record["eval_s"] = round(time.monotonic() - started, 3)
        self.log.write(record)
        return f"validation top-1 {record['val_acc'] * 100:.2f}%" if "val_acc" in record else None
