"""A multi-path supernet on the same space (FBNet/DARTS-style): what Single-Path NAS is measured against.

Every searchable layer runs each of its candidate ops as a separate MBConv branch (and the identity
where the layer may be skipped) and sums them, weighted by a Gumbel-softmax of learned logits. Its
expected latency is those weights times the same latency table. It exists to measure what the paper
claims a single path saves (a step's time and memory, issue 17), not as a recommended method.
"""

from __future__ import annotations

from dataclasses import astuple

import torch
import torch.nn.functional as F
from torch import nn

from spnas.model.arch import Architecture
from spnas.nn.blocks import MBConv
from spnas.nn.network import SinglePathNet
from spnas.nn.superkernel import Decision
from spnas.model.space import MBCONV_OPS, SKIP, LayerSpec, SearchSpace, op_kernel_expand


class MixedLayer(nn.Module):
    """All candidate ops of one layer, mixed by architecture weights (``fixed``: given weights instead)."""

    def __init__(self, spec: LayerSpec, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.ops: tuple[str, ...] = spec.candidates
        self.branches = nn.ModuleDict({
            op: MBConv(spec.in_channels, spec.out_channels, spec.stride, *op_kernel_expand(op), bn_eps, bn_momentum)
            for op in MBCONV_OPS})
        self.alpha = nn.Parameter(torch.zeros(len(self.ops)))
        self.temperature = 1.0
        #: weights to use instead of sampling (one-hot for a fixed architecture), or None
        self.fixed: torch.Tensor | None = None
        #: an even mixture (a search's warm-up: every branch trains, the logits stay put)
        self.uniform = False
        #: the mixture weights of the last forward pass (for the expected-latency term)
        self.weights: torch.Tensor | None = None

    def mixture(self) -> torch.Tensor:
        if self.fixed is not None:
            return self.fixed
        if self.uniform:  # the logits stay in the graph with a zero gradient, as DDP wants every parameter used
            return torch.softmax(self.alpha * 0.0, dim=0)
        if self.training:
            return F.gumbel_softmax(self.alpha, tau=self.temperature)
        return torch.softmax(self.alpha / self.temperature, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.weights = w = self.mixture()
        out = sum(w[i] * self.branches[op](x) for i, op in enumerate(self.ops) if op != SKIP)
        return out + w[self.ops.index(SKIP)] * x if SKIP in self.ops else out


class MultiPathNet(SinglePathNet):
    """The space's network with a :class:`MixedLayer` in every searchable position."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__(space)

    def searchable_layer(self, spec: LayerSpec) -> nn.Module:
        return MixedLayer(spec, self.space.bn_eps, self.space.bn_momentum)

    def mixed_layers(self) -> list[MixedLayer]:
        return [m for m in self.layers if isinstance(m, MixedLayer)]

    def set_temperature(self, tau: float) -> None:
        for layer in self.mixed_layers():
            layer.temperature = tau

    @torch.no_grad()
    def fix_architecture(self, arch: Architecture | None) -> None:
        """One-hot weights spelling ``arch`` (every branch still runs: the cost stays multi-path)."""
        for i, layer in enumerate(self.mixed_layers()):
            layer.fixed = None if arch is None else F.one_hot(
                torch.tensor(layer.ops.index(arch.ops[i])), len(layer.ops)).float().to(layer.alpha.device)

    def expected_ms(self, table: torch.Tensor, constant_ms: float) -> torch.Tensor:
        """Sum over layers of the last forward's weights times the table's ops (skip costs 0)."""
        return constant_ms + (self.expected_op_weights() * table).sum()

    def expected_op_weights(self) -> torch.Tensor:
        """(layers, 4): each op's probability under the last forward's weights, in MBCONV_OPS order
        (skip's share is left out: it costs nothing); the calibration's weights too."""
        return torch.stack([torch.stack([sum((w for w, o in zip(layer.weights, layer.ops) if o == op),
                                             layer.weights.new_zeros(())) for op in MBCONV_OPS])
                            for layer in self.mixed_layers()])

    @torch.no_grad()
    def decision_state(self) -> dict[str, torch.Tensor]:
        """``decisions``: (layers, 3) the decisions [k5, e3, e6] of every layer's most likely op, on the
        device (nothing is read to the host)."""
        layers = self.mixed_layers()
        width = max(len(l.ops) for l in layers)
        alphas = torch.stack([F.pad(l.alpha, (0, width - len(l.ops)), value=float("-inf")) for l in layers])
        device = alphas.device
        if getattr(self, "_op_decisions", None) is None or self._op_decisions.device != device:
            rows = [[list(astuple(Decision.from_op(op))) for op in l.ops] + [[0, 0, 0]] * (width - len(l.ops))
                    for l in layers]
            self._op_decisions = torch.tensor(rows, dtype=alphas.dtype, device=device)
        return {"decisions": self._op_decisions[torch.arange(len(layers), device=device), alphas.argmax(1)]}

    def architecture(self) -> Architecture:
        """The most likely op of every layer."""
        return Architecture(self.space.name, tuple(Decision(*map(int, row)).op
                                                   for row in self.decision_state()["decisions"].tolist()))
