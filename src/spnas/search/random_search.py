"""Random search at the budget of one single-path search: the control the NAS literature asks for
(Li & Talwalkar 2019; Yang et al. 2020), as ``spnas search --method random``.

``--candidates K`` architectures are drawn uniformly from the space, each inside the latency band of
``--target-ms`` (the band the single-path search must land in), and each is trained from scratch for
1/K of the search's optimiser steps at the same batch, then scored on the validation split (BatchNorm
re-estimated, as the search's own validation does). The best one is the result. In steps × batch the
whole costs exactly one search; its wall time is in summary.json beside the search's.

It runs as one step loop, candidate after candidate (a candidate is an "epoch" of the loop), so the
run checkpoints, stops and resumes exactly like a search, mid-candidate included.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from spnas.model.arch import Architecture
from spnas.jobs.engine import GlobalBatchStep
from spnas.errors import SpnasError
from spnas.jobs.evaluate import accuracy, recalibrated_batchnorm
from spnas.jobs.job import Job
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.nn.network import SinglePathNet
from spnas.search.repair import band_low
from spnas.jobs.optim import L2Term, make_optimizer
from spnas.jobs.runs import MetricsLog
from spnas.model.space import SearchSpace

#: draws tried for each candidate before the band is declared empty
MAX_DRAWS = 100_000


def draw_candidates(space: SearchSpace, lut: LatencyTable, count: int, seed: int, target_ms: float | None,
                    margin: float, fits: Callable[[tuple[str, ...]], bool] = lambda ops: True) -> list[Architecture]:
    """``count`` architectures drawn uniformly per layer, in canonical form (priced as such); with a
    target, only those predicted inside [target·(1 - 2·margin), target]; only those that ``fits`` (the
    other budgets)."""
    rng = random.Random(seed)
    low, high = (band_low(target_ms, margin), target_ms) if target_ms else (0.0, float("inf"))
    drawn = []
    for _ in range(count):
        for _ in range(MAX_DRAWS):
            arch = Architecture(space.name, tuple(rng.choice(layer.candidates) for layer in space.layers())).canonical()
            if low <= predict_ms(lut, arch) <= high and fits(arch.ops):
                drawn.append(arch)
                break
        else:
            raise SpnasError(f"random search: no architecture in {MAX_DRAWS:,} draws was predicted inside "
                             f"[{low:.4g}, {high:.4g}] ms and inside the other budgets; widen --target-margin, move "
                             "--target-ms or relax --max-params/--max-macs/--max-memory")
    return drawn


@dataclass
class CandidateTraining:
    """The random search's state and its step: which candidate trains now, and what the finished ones
    scored. A checkpoint holds all of it (its ``state_dict``)."""

    job: Job
    space: SearchSpace
    lut: LatencyTable
    candidates: list[Architecture]
    proxy_steps: int
    source: Any
    val: Any
    log: MetricsLog
    guard: Any
    index: int = -1
    results: list[dict] = field(default_factory=list)

    def start(self, index: int) -> None:
        cfg, precision = self.job.cfg, self.job.precision
        torch.manual_seed(cfg.seed * 7919 + index)  # each candidate's initial weights
        self.index = index
        self.net = precision.prepare(SinglePathNet(self.space, self.candidates[index]))
        self.optimizer = make_optimizer(cfg.optimizer, self.net.parameters(), cfg.lr)
        self.one_step = GlobalBatchStep(self.job.forward_model(self.net), self.net,
                                        self.optimizer, precision, self.job.replicas, self.job.num_parts,
                                        cfg.label_smoothing, L2Term.of(self.net, cfg.weight_decay))
        if self.guard is not None:
            self.guard.model = self.net

    def step(self, step: int) -> dict | None:
        cfg = self.job.cfg
        if step // self.proxy_steps != self.index:
            self.start(step // self.proxy_steps)
        epoch, in_epoch = divmod(step, self.source.steps_per_epoch)  # the data stream runs on across candidates
        self.net.train()
        stats = self.one_step(step, lambda part: self.source.batch(epoch, in_epoch, part, self.job.num_parts),
                              step_seed=cfg.seed * 1_000_003 + step)
        self.guard.record(step, stats)
        if step % cfg.log_every:
            return None
        self.guard.verify()
        values = stats.read()
        self.log.write({"step": step, "candidate": self.index, "loss": values["loss"], "ce": values["ce"],
                        "batch_acc": values["batch_acc"], "grad_norm": values["grad_norm"]})
        return {"candidate": f"{self.index + 1}/{len(self.candidates)}", "ce": f"{values['ce']:.3f}"}

    def epoch_end(self, step: int) -> str:
        """A candidate's proxy training is over: score it (every rank, so all keep the same results)."""
        self.guard.verify()
        with recalibrated_batchnorm(self.net, self.source) as calibrated:
            val_acc = accuracy(calibrated, self.val) if len(self.job.data.val) else 0.0
        arch = self.candidates[self.index]
        self.results.append({"candidate": self.index, "arch": arch.to_string(), "val_acc": val_acc,
                             "predicted_ms": predict_ms(self.lut, arch), "steps": self.proxy_steps})
        self.log.write({"step": step, "epoch_end": self.index + 1, **self.results[-1]})
        return f"candidate {self.index + 1}/{len(self.candidates)} scored {val_acc * 100:.2f}% on validation"

    def best(self) -> dict:
        return max(self.results, key=lambda r: (r["val_acc"], -r["predicted_ms"]))

    def state_dict(self) -> dict:
        return {"index": self.index, "results": self.results, "model": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.results = list(state["results"])
        self.start(state["index"])
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
