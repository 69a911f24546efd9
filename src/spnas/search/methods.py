"""Search methods: what differs between searching with a single-path and a multi-path supernet.

The loop (:mod:`spnas.search.loop`) is the same for both: data, optimiser, schedule, the loss
CE + L2 + lambda·1000·ln(latency), the target controller on the hard decisions' latency, checkpoints
and replicas. A method builds the supernet, sets it up for each step (warm-up or not), gives the
differentiable latency of the step's forward pass, and turns the trained supernet into the result.

- ``single-path`` (the paper): thresholds on group norms of one 5x5 superkernel per layer; indicator
  dropout during warm-up; the result is the hard decisions, repaired to the latency band in target mode.
- ``multipath`` (FBNet-style, a baseline for issue 17): every op a branch; uniform mixture during
  warm-up, then Gumbel-softmax of learned logits with a temperature that decays per epoch; the
  expected latency over the mixture; the result is the most likely op of every layer (no repair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from spnas.model.arch import Architecture
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import differentiable_ms, op_mixture
from spnas.nn.multipath import MultiPathNet
from spnas.nn.network import SinglePathNet
from spnas.search.budgets import Budgets
from spnas.search.repair import repair_to_budget
from spnas.model.space import SearchSpace


@dataclass(frozen=True)
class SinglePath:
    name: ClassVar[str] = "single-path"
    #: its decisions can be frozen where they meet the budget (:mod:`spnas.search.landing`)
    lands: ClassVar[bool] = True

    def build(self, space: SearchSpace, cfg) -> SinglePathNet:
        net = SinglePathNet(space)
        net.set_indicator_scale(cfg.indicator_scale)
        return net

    def begin_step(self, net: SinglePathNet, cfg, warm: bool, epoch: float) -> None:
        net.set_indicator_keep(cfg.indicator_keep if warm else None)

    def latency_ms(self, net: SinglePathNet, lut: LatencyTable, table: torch.Tensor, cfg) -> torch.Tensor:
        return differentiable_ms(lut, net.indicators().float(), cfg.runtime_formula, table=table)

    def decision_state(self, net: SinglePathNet) -> dict[str, torch.Tensor]:
        """The hard decisions now, on the device: ``decisions`` (layers, 3) and ``margins`` (layers, 3)."""
        return net.decision_state()

    def op_weights(self, net: SinglePathNet) -> torch.Tensor:
        """(layers, 4) each op's weight under the last forward's indicators: what the budgets price."""
        return op_mixture(net.indicators().float())

    def state(self, net: SinglePathNet) -> dict:
        return {"thresholds": net.thresholds(), "norms": net.group_norms()}

    def result(self, net: SinglePathNet, lut: LatencyTable, cfg, budgets: Budgets = Budgets()
               ) -> tuple[Architecture, list]:
        """(architecture, decisions flipped to meet the latency band and every other budget)."""
        if not cfg.target_ms and not budgets:
            return net.architecture(), []
        repair = repair_to_budget(net, lut, cfg.target_ms, cfg.target_margin, budgets)
        return repair.arch, repair.flips


@dataclass(frozen=True)
class MultiPath:
    name: ClassVar[str] = "multipath"
    lands: ClassVar[bool] = False

    def build(self, space: SearchSpace, cfg) -> MultiPathNet:
        return MultiPathNet(space)

    def begin_step(self, net: MultiPathNet, cfg, warm: bool, epoch: float) -> None:
        warm_epochs = cfg.warmup_fraction * cfg.epochs
        for layer in net.mixed_layers():
            layer.uniform = warm
        net.set_temperature(cfg.temperature * cfg.temperature_decay ** max(0.0, epoch - warm_epochs))

    def latency_ms(self, net: MultiPathNet, lut: LatencyTable, table: torch.Tensor, cfg) -> torch.Tensor:
        """The calibrated latency of the expected network: exact in every additive term; the curvature
        (``calibration.q``) is taken at the expected sum, which misses the expected curvature by q·Var(sum):
        with q < 0, as measured, a slight overestimate while the mixture is still spread."""
        expected = net.expected_ms(table, lut.constant_ms)
        return lut.calibration.apply(expected, net.expected_op_weights()) if lut.calibration else expected

    def decision_state(self, net: MultiPathNet) -> dict[str, torch.Tensor]:
        """``decisions`` (layers, 3): those of each layer's most likely op, on the device."""
        return net.decision_state()

    def op_weights(self, net: MultiPathNet) -> torch.Tensor:
        """(layers, 4) the mixture's probability of each op: its expected costs."""
        return net.expected_op_weights()

    def state(self, net: MultiPathNet) -> dict:
        return {"alphas": [[round(v, 4) for v in layer.alpha.tolist()] for layer in net.mixed_layers()]}

    def result(self, net: MultiPathNet, lut: LatencyTable, cfg, budgets: Budgets = Budgets()
               ) -> tuple[Architecture, list]:
        """The most likely op of every layer, as FBNet returns it: its budgets steer the mixture during the
        search, but nothing repairs the result (a baseline, not a recommended method)."""
        return net.architecture(), []


METHODS = {m.name: m for m in (SinglePath(), MultiPath())}
