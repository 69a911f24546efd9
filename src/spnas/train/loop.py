"""Train a derived network from scratch (no weights inherited from the supernet, as in the paper)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spnas.model.arch import Architecture, resolve_arch
from spnas.data.datasets import DataSplits
from spnas.data.loader import eval_source, train_source
from spnas.jobs.divergence import DivergenceGuard
from spnas.jobs.engine import GlobalBatchStep, run_steps
from spnas.errors import SpnasError
from spnas.jobs.evaluate import evaluate, recalibrated_batchnorm, reestimate_batchnorm
from spnas.outputs.files import atomic_path, write_json
from spnas.nn.network import SinglePathNet
from spnas.jobs.optim import L2Term, cosine_schedule, make_optimizer, staircase_schedule
from spnas.jobs.job import Job
from spnas.jobs.runs import MetricsLog, resumed_config
from spnas.model.space import SearchSpace, space_for_data
from spnas.train.config import TrainConfig
from spnas.train.ema import WeightEMA

MODEL_FILE = "model.pt"
#: per-epoch validation re-estimates BN on at most this many batches (the saved model on all of
#: ``precise_bn_batches``): enough to follow progress; 50 per epoch made a 3-epoch quick run 45% slower
EPOCH_VAL_BN_BATCHES = 20


@dataclass
class TrainResult:
    arch: Architecture
    run_dir: Path
    metrics: dict


def param_groups(net: nn.Module, weight_decay: float) -> list[dict]:
    """Decoupled weight decay on conv/linear weights only (not BN, not biases)."""
    decay, no_decay = [], []
    for m in net.modules():
        for name, p in m.named_parameters(recurse=False):
            is_bn = isinstance(m, nn.modules.batchnorm._BatchNorm)
            (no_decay if is_bn or name == "bias" else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def run_train(cfg: TrainConfig, resume_dir: str | None = None, force: bool = False,
              overrides: dict | None = None, data: DataSplits | None = None) -> TrainResult:
    """Train ``cfg.arch`` into a new run directory, or resume ``resume_dir`` (``overrides``: the options
    given with ``--resume``; only :data:`~spnas.jobs.jobconfig.RESUME_OPTIONS` may change). Under torchrun
    every rank calls this; rank 0 writes the files and measures the model."""
    if resume_dir is not None:
        cfg = resumed_config(TrainConfig, Path(resume_dir), overrides or {})
    else:
        cfg = cfg.check().resolved().check()
        if not cfg.arch:
            raise SpnasError("no architecture: give ARCH (a preset, arch.json, or a string)")
    arch = resolve_arch(cfg.arch, cfg.space)
    job = Job.prepare(cfg, resume_dir, force, data)
    space = space_for_data(arch.space, job.data, cfg.width)
    # the architecture itself is stored in config.json, so resume does not need the ARCH file
    with job.directory(dataclasses.replace(job.cfg, arch=arch.to_string(), space=arch.space), force):
        return _train(job, arch, space)


def _train(job: Job, arch: Architecture, space: SearchSpace) -> TrainResult:
    cfg, data, precision, run_dir = job.cfg, job.data, job.precision, job.run_dir
    torch.manual_seed(cfg.seed)
    device = precision.device
    net = precision.prepare(SinglePathNet(space, arch))
    source = job.train_source()
    steps_per_epoch = source.steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    # tf-rmsprop: the paper's L2 term in the loss; sgd/adamw: decoupled decay in the optimiser
    in_loss = cfg.optimizer == "tf-rmsprop"
    optimizer = make_optimizer(cfg.optimizer, param_groups(net, 0.0 if in_loss else cfg.weight_decay), cfg.lr)
    if cfg.schedule == "cosine":
        schedule = cosine_schedule(optimizer, steps_per_epoch, total, cfg.warmup_epochs)
    else:
        schedule = staircase_schedule(optimizer, steps_per_epoch, cfg.lr_decay, cfg.lr_decay_epochs,
                                      cfg.warmup_epochs)
    ema = WeightEMA(net, cfg.ema_decay)
    parts = {"model": net, "ema": ema, "optimizer": optimizer, "schedule": schedule, "precision": precision}
    start, wall_before = job.restore(parts, "train")
    guard = job.guard(total, f"--lr-per-256 {cfg.lr_per_256:g}, LR {cfg.lr:g} at batch {cfg.batch_size}", start, net)
    one_step = GlobalBatchStep(job.forward_model(net), net, optimizer, precision,
                               job.replicas, job.num_parts, cfg.label_smoothing,
                               L2Term.of(net, cfg.weight_decay) if in_loss else None)
    log = job.metrics_log(start)
    val = eval_source(data, data.val, device=device, decode=cfg.decode)
    precise_bn = cfg.precise_bn_batches or 0  # configs from before the option: 0
    bn_source = train_source(data, cfg.batch_size, cfg.seed + 1, device, decode=cfg.decode)

    loop = TrainingSteps(job, net, ema, source, one_step, schedule, guard, log, val, bn_source, precise_bn,
                         steps_per_epoch)
    try:
        run_steps(start=start, total=total, steps_per_epoch=steps_per_epoch, desc=f"train {arch.space}",
                  step=loop.step, epoch_end=loop.epoch_end,
                  save=lambda step: job.checkpoint(step, parts, "train", guard, wall_before),
                  max_steps=cfg.max_steps, checkpoint_s=cfg.checkpoint_minutes * 60,
                  resume_hint=f"spnas train --resume {run_dir}", replicas=job.replicas,
                  images_per_step=cfg.batch_size)
    finally:
        log.close()
    if not job.replicas.main:  # rank 0 measures and writes the model; its weights are every rank's
        return TrainResult(arch, run_dir, {})

    if precise_bn:
        reestimate_batchnorm(net, bn_source, precise_bn)
        reestimate_batchnorm(ema.module, bn_source, precise_bn)
    guard.check_state(total, {"model": net, "ema": ema.module})  # what model.pt would hold
    metrics = final_metrics(net, ema.module, data, device, cfg.decode)
    metrics["precise_bn_batches"] = precise_bn
    metrics["train_wall_s"] = job.wall_s(wall_before)
    metrics["epochs"], metrics["steps"] = cfg.epochs, total
    best = ema.module if metrics["exported"] == "ema" else net
    save_model(run_dir / MODEL_FILE, best, arch, space, data, metrics)
    write_json(run_dir / "results.json", {"arch": arch.to_string(), **metrics})
    return TrainResult(arch, run_dir, metrics)


@dataclass
class TrainingSteps:
    """One training step and one epoch end (what :func:`~spnas.jobs.engine.run_steps` calls), with what
    they need; built once by the job. A step reads nothing from the device unless it writes a log line."""

    job: Job
    net: nn.Module
    ema: WeightEMA
    source: Any
    one_step: GlobalBatchStep
    schedule: Any
    guard: DivergenceGuard
    log: MetricsLog
    val: Any
    bn_source: Any
    precise_bn: int
    steps_per_epoch: int

    def step(self, step: int) -> dict | None:
        cfg, parts = self.job.cfg, self.job.num_parts
        epoch, in_epoch = divmod(step, self.steps_per_epoch)
        self.net.train()
        stats = self.one_step(step, lambda part: self.source.batch(epoch, in_epoch, part, parts),
                              step_seed=cfg.seed * 1_000_003 + step)
        self.guard.record(step, stats)
        self.schedule.step()
        self.ema.update_parameters(self.net)
        if step % cfg.log_every:
            return None
        self.guard.verify()
        values = stats.read()
        self.log.write({"step": step, "epoch": step / self.steps_per_epoch, "loss": values["loss"],
                        "ce": values["ce"], "grad_norm": values["grad_norm"], "lr": self.schedule.get_last_lr()[0],
                        "batch_acc": values["batch_acc"]})
        return {"loss": f"{values['loss']:.3f}"}

    def epoch_end(self, step: int) -> str | None:
        self.guard.verify()
        if not self.job.replicas.main:  # the others go on to the next step and wait for rank 0 there
            return None
        started = time.monotonic()
        record = {"step": step, "epoch_end": step // self.steps_per_epoch + 1}
        if len(self.job.data.val):
            bn_batches = min(self.precise_bn, EPOCH_VAL_BN_BATCHES)
            record["val_top1"] = _val_accuracy(self.net, self.val, self.bn_source, bn_batches)
            record["val_top1_ema"] = _val_accuracy(self.ema.module, self.val, self.bn_source, bn_batches)
            record["eval_s"] = round(time.monotonic() - started, 3)
        self.log.write(record)
        if "val_top1" not in record:
            return None
        return f"validation top-1 {record['val_top1'] * 100:.2f}% (EMA {record['val_top1_ema'] * 100:.2f}%)"


def _val_accuracy(model: nn.Module, val, bn_source, precise_bn: int) -> float:
    """Validation top-1; with precise BN, measured on re-estimated statistics that are then put back."""
    if not precise_bn:
        return evaluate(model, val, (1,))["top1"]
    with recalibrated_batchnorm(model, bn_source, precise_bn) as calibrated:
        return evaluate(calibrated, val, (1,))["top1"]


def final_metrics(net: nn.Module, ema_net: nn.Module, data: DataSplits, device: torch.device | None = None,
                  decode: str = "auto") -> dict:
    """Test accuracy with and without EMA; the one with the better validation accuracy is exported."""
    test = eval_source(data, data.test, device=device, decode=decode)
    raw, ema = evaluate(net, test), evaluate(ema_net, test)
    choice = "raw"
    if len(data.val):
        val = eval_source(data, data.val, device=device, decode=decode)
        choice = "ema" if evaluate(ema_net, val, (1,))["top1"] >= evaluate(net, val, (1,))["top1"] else "raw"
    chosen = ema if choice == "ema" else raw
    return {"test_top1": chosen["top1"], "test_top5": chosen.get("top5"), "test_top1_raw": raw["top1"],
            "test_top1_ema": ema["top1"], "exported": choice}


def save_model(path: Path, net: nn.Module, arch: Architecture, space: SearchSpace, data: DataSplits,
               metrics: dict) -> None:
    """Weights plus everything needed to rebuild, export and run the model (no pickled classes)."""
    with atomic_path(path) as tmp:
        torch.save({"arch": arch.to_dict(), "space": space.to_dict(), "state_dict": net.state_dict(),
                    "data": {"name": data.name, "mean": list(data.mean), "std": list(data.std),
                             "classes": list(data.classes)},
                    "metrics": metrics}, tmp)


def load_model(path: str | Path) -> tuple[SinglePathNet, dict]:
    """Rebuild a trained network from model.pt (a file or the run directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise SpnasError(f"{path}: no trained model (run 'spnas train' first)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SpnasError(f"{path}: unreadable model file ({type(err).__name__})") from None
    if not isinstance(blob, dict) or not {"space", "arch", "state_dict"} <= set(blob):
        kind = blob.get("kind") if isinstance(blob, dict) and "step" in blob else None
        hint = (f": it is the checkpoint of a {kind} run; give the run directory or its {MODEL_FILE}, "
                "written when training ends" if kind else f"; give a run directory of 'spnas train' or its {MODEL_FILE}")
        raise SpnasError(f"{path}: not a trained model{hint}")
    space = SearchSpace.from_dict(blob["space"])
    arch = Architecture.from_dict(blob["arch"], str(path))
    net = SinglePathNet(space, arch)
    net.load_state_dict(blob["state_dict"])
    return net.eval(), blob
