"""The search loop: one supernet, one optimiser, one loss, one pass over the schedule (SPEC §5).

Read top to bottom: set-up, resume, the step, the epoch end, the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from spnas.arch import Architecture
from spnas.data.datasets import DataSplits, load_data
from spnas.data.loader import eval_source, train_source
from spnas.device import Precision, resolve_device
from spnas.divergence import DivergenceGuard
from spnas.engine import run_steps
from spnas.errors import SpnasError
from spnas.evaluate import accuracy, recalibrated_batchnorm
from spnas.io import write_json
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import differentiable_ms, lut_tensor, predict_ms
from spnas.nn.network import SinglePathNet
from spnas.optim import make_optimizer, staircase_schedule
from spnas.rundir import check_new_run_dir
from spnas.runs import (CHECKPOINT, METRICS, MetricsLog, job_directory, new_config, restore_checkpoint, resumed_config,
                        save_checkpoint)
from spnas.search.config import SearchConfig
from spnas.search.objective import TargetController, search_loss
from spnas.search.plots import plot_search_progress
from spnas.search.repair import repair_to_budget
from spnas.space import SearchSpace, space_for_data


@dataclass
class SearchResult:
    arch: Architecture
    predicted_ms: float
    run_dir: Path
    wall_s: float
    #: the hard decisions at the last step, before any budget repair, and the repair's flips
    last_step: Architecture
    last_step_ms: float
    repair_flips: list


def load_lut_for(space: SearchSpace, path: str | None) -> LatencyTable:
    if path is None:
        raise SpnasError("no latency table: pass --lut FILE (make one with "
                         f"'spnas latency profile --space {space.name} --out lut.json')")
    lut = LatencyTable.load(path)
    lut.check(space, path)
    return lut


def run_search(cfg: SearchConfig, resume_dir: str | None = None, force: bool = False,
               overrides: dict | None = None) -> SearchResult:
    """Search into a new run directory, or resume ``resume_dir`` (``overrides``: the options given
    with ``--resume``; only ``max_steps`` and ``threads`` may change)."""
    if resume_dir is not None:
        cfg = resumed_config(SearchConfig, Path(resume_dir), overrides or {})
    else:
        cfg.check()
    precision = Precision(resolve_device(cfg.device), cfg.amp)
    if resume_dir is None:
        check_new_run_dir(cfg.out, force)
    data = load_data(cfg.data, cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.train_subset)
    space = space_for_data(cfg.space, data, cfg.width)
    lut = load_lut_for(space, cfg.lut)  # refused before any training starts
    if len(data.train) < cfg.batch_size:
        raise SpnasError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} training images")
    if resume_dir is None:
        cfg = new_config(cfg)
    with job_directory(cfg, resume_dir, force) as run_dir:
        return _search(cfg, data, space, lut, run_dir, resumed=resume_dir is not None, precision=precision)


def _search(cfg: SearchConfig, data: DataSplits, space: SearchSpace, lut: LatencyTable, run_dir: Path,
            resumed: bool, precision: Precision) -> SearchResult:
    torch.manual_seed(cfg.seed)
    source = train_source(data, cfg.batch_size, cfg.seed, precision.device)
    steps_per_epoch, total = source.steps_per_epoch, cfg.epochs * source.steps_per_epoch
    warmup_steps = round(cfg.warmup_fraction * total)
    net = SinglePathNet(space)
    net.set_indicator_scale(cfg.indicator_scale)
    net = precision.prepare(net)
    optimizer = make_optimizer(cfg.optimizer, net.parameters(), cfg.lr)
    schedule = staircase_schedule(optimizer, steps_per_epoch, cfg.lr_decay, cfg.lr_decay_epochs)
    controller = (TargetController(cfg.target_ms, cfg.lambda_, cfg.target_margin, cfg.lambda_rate,
                                   cfg.lambda_gain)
                  if cfg.target_ms else None)
    parts = {"model": net, "optimizer": optimizer, "schedule": schedule, "controller": controller,
             "precision": precision}
    start, wall_before = restore_checkpoint(run_dir / CHECKPOINT, parts, "search") if resumed else (0, 0.0)
    guard = DivergenceGuard(run_dir, total, data.num_classes,
                            f"--lr-per-256 {cfg.lr_per_256:g}, LR {cfg.lr:g} at batch {cfg.batch_size}", start or None)

    def checkpoint(step: int) -> None:
        guard.check_state(step, parts)
        save_checkpoint(run_dir / CHECKPOINT, step, wall_before + time.monotonic() - t0, parts, "search")
        guard.saved(step)

    table = lut_tensor(lut, precision.device)
    log = MetricsLog(run_dir / METRICS, resume_step=start if resumed else None)
    t0 = time.monotonic()
    val = eval_source(data, data.val, device=precision.device)

    def step_fn(step: int) -> dict:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        warm = step < warmup_steps
        net.train()
        net.set_indicator_keep(cfg.indicator_keep if warm else None)
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # dropout draws depend on the step only
        x, y = precision.batch(*source.batch(epoch, in_epoch))
        with precision.autocast():
            logits = net(x)
        logits = logits.float()  # the loss, latency term and thresholds stay float32
        latency = differentiable_ms(lut, net.indicators().float(), cfg.runtime_formula, table=table)
        lam = 0.0 if warm else (controller.lam if controller else cfg.lambda_)
        loss = search_loss(logits, y, net, latency, lam, cfg.label_smoothing, cfg.weight_decay)
        guard.check_loss(step, loss.ce, loss.total, latency_ms=latency, runtime=loss.runtime, lam=lam)
        grad_norm = precision.backward_and_step(loss.total, optimizer, net, guard, step)
        schedule.step()

        arch = net.architecture()
        hard_ms = predict_ms(lut, arch)
        if controller and not warm:
            controller.update(hard_ms)
        if step % cfg.log_every == 0 or step + 1 == total:
            log.write({
                "step": step, "epoch": step / steps_per_epoch, "loss": loss.total.item(),
                "ce": loss.ce.item(), "l2": loss.l2.item(), "runtime_term": loss.runtime.item(),
                "predicted_ms": hard_ms, "lambda": lam, "lr": schedule.get_last_lr()[0], "grad_norm": grad_norm,
                "warmup": warm, "batch_acc": (logits.argmax(1) == y).float().mean().item(),
                "ops": list(arch.ops), "thresholds": net.thresholds(), "norms": net.group_norms(),
            })
        return {"ce": f"{loss.ce.item():.3f}", "ms": f"{hard_ms:.3f}", "lam": f"{lam:.3g}"}

    def epoch_end(step: int) -> None:
        arch = net.architecture()
        record = {"step": step, "epoch_end": step // steps_per_epoch + 1,
                  "predicted_ms": predict_ms(lut, arch), "arch": arch.to_string()}
        if cfg.eval_every_epoch and len(data.val):
            with recalibrated_batchnorm(net, source) as calibrated:  # see its docstring: dropout vs BN
                record["val_acc"] = accuracy(calibrated, val)
        log.write(record)

    try:
        run_steps(start=start, total=total, steps_per_epoch=steps_per_epoch, desc="search", step=step_fn,
                  epoch_end=epoch_end, save=checkpoint, max_steps=cfg.max_steps,
                  checkpoint_s=cfg.checkpoint_minutes * 60, resume_hint=f"spnas search --resume {run_dir}")
    finally:
        log.close()

    last_step = net.architecture()
    repair = repair_to_budget(net, lut, cfg.target_ms, cfg.target_margin) if cfg.target_ms else None
    arch = repair.arch if repair else last_step
    wall = wall_before + time.monotonic() - t0
    result = SearchResult(arch, predict_ms(lut, arch), run_dir, wall, last_step, predict_ms(lut, last_step),
                          repair.flips if repair else [])
    arch.save(run_dir / "arch.json", predicted_ms=result.predicted_ms,
              predicted_raw_ms=predict_ms(lut, arch, calibrated=False), target_ms=cfg.target_ms,
              lambda_=controller.lam if controller else cfg.lambda_, lut=cfg.lut, lut_target=lut.target,
              search_wall_s=wall, space_def=space.to_dict(), last_step_arch=last_step.to_string(),
              last_step_predicted_ms=result.last_step_ms, repair_flips=result.repair_flips)
    write_json(run_dir / "summary.json", {
        "arch": arch.to_string(), "predicted_ms": result.predicted_ms, "target_ms": cfg.target_ms,
        "last_step_arch": last_step.to_string(), "last_step_predicted_ms": result.last_step_ms,
        "repair_flips": result.repair_flips,
        "steps": total, "wall_s": wall, "thresholds": net.thresholds(), "norms": net.group_norms()})
    plot_search_progress(run_dir / METRICS, run_dir / "progress.png", space, cfg.target_ms, warmup_steps)
    return result
