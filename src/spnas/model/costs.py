"""Parameters, multiply-adds and peak activation memory of any network of a space: exactly for an
architecture, and differentiably for a supernet (what ``--max-params``, ``--max-macs`` and ``--max-memory``
bound, beside latency).

Each is a table over the space's (layer, op) pairs plus the fixed parts, like a latency table, but
counted rather than timed: every part (the prefix, each candidate block of each layer, the suffix) is
built as a module and run once at batch 1 with hooks (:func:`count`). Parameters and multiply-adds add
up over parts; peak memory is the largest over them (each part's peak counts its own input and output,
so the whole network's peak, counted op by op, is the largest part's). A skipped layer costs nothing.

Peak activation memory follows the usual microcontroller convention (MCUNet, TinyNAS): at batch 1, the
largest sum over the network's convolutions, pooling and classifier of the bytes of the op's input, its
output and any tensor held for a later residual add; BatchNorm and ReLU fold into the convolution
before them, as deployment runtimes run them. Weights are not activations. Bytes are the precision's:
4 per value in float32, 1 in int8.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from spnas.errors import SpnasError
from spnas.model.space import MBCONV_OPS, SKIP, SearchSpace

#: the budgets beside latency
MEASURES = ("params", "macs", "memory")
UNITS = {"params": "parameters", "macs": "multiply-adds", "memory": "bytes of activations at batch 1"}
BYTES_PER_VALUE = {"float32": 4, "int8": 1}


@torch.no_grad()
def count(module: nn.Module, input_shape: list[int]) -> dict[str, int]:
    """Parameters (thresholds excluded), multiply-adds and peak activation values (not bytes) of ``module``
    run once on zeros of ``input_shape`` (batch 1), counted with hooks on every convolution, pooling and
    linear layer, and on residual blocks (whose input is held until their add)."""
    from spnas.nn.blocks import MBConv

    macs, peak, held = 0, 0, []

    def op(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal macs, peak
        x = inputs[0]
        if isinstance(m, nn.Conv2d):
            macs += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features
        kept = sum(h.numel() for h in held if h is not x)
        peak = max(peak, x[0].numel() + out[0].numel() + kept)

    def hold(m: MBConv, inputs: tuple) -> None:
        if m.has_residual:
            held.append(inputs[0])

    def release(m: MBConv, inputs: tuple, out: torch.Tensor) -> None:
        if m.has_residual:
            del held[next(i for i, h in enumerate(held) if h is inputs[0])]

    handles = []
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.AdaptiveAvgPool2d)):
            handles.append(m.register_forward_hook(op))
        elif isinstance(m, MBConv):
            handles.append(m.register_forward_pre_hook(hold))
            handles.append(m.register_forward_hook(release))
    was_training = module.training
    module.eval()
    try:
        module(torch.zeros(*input_shape))
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    params = sum(p.numel() for n, p in module.named_parameters() if ".superkernel." not in n and
                 not n.startswith("superkernel."))
    return {"params": params, "macs": macs, "memory": peak}


@dataclass(frozen=True)
class CostTable:
    """One measure over a space: ``constant`` (the fixed parts) and each layer's cost per op, combined by sum
    (params, macs) or by max (memory, in bytes of ``precision``)."""

    measure: str
    constant: float
    layers: tuple[tuple[float, ...], ...]  # per layer, in MBCONV_OPS order (skip costs 0)
    precision: str = "float32"

    @property
    def combine(self) -> str:
        return "max" if self.measure == "memory" else "sum"

    def of(self, ops: tuple[str, ...] | list[str]) -> float:
        """The exact cost of the network whose layers take ``ops``."""
        values = [row[MBCONV_OPS.index(op)] for row, op in zip(self.layers, ops) if op != SKIP]
        if self.combine == "max":
            return max([self.constant, *values])
        return self.constant + sum(values)

    def smallest(self, space: SearchSpace) -> float:
        """The least any network of the space costs (each layer its cheapest candidate)."""
        cheapest = [0.0 if layer.skippable else min(row) for row, layer in zip(self.layers, space.layers())]
        return max([self.constant, *cheapest]) if self.combine == "max" else self.constant + sum(cheapest)

    def tensor(self, device: torch.device | str | None = None) -> torch.Tensor:
        """(layers, 4) in MBCONV_OPS order, float64."""
        return torch.tensor(self.layers, dtype=torch.float64, device=device)

    def differentiable(self, weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """The cost of a mixture: ``weights`` (layers, 4) each op's weight per layer (0/1 for a network: then
        exactly :meth:`of`); ``table`` from :meth:`tensor`. Memory takes the largest layer's, so its
        gradient reaches the layer that sets the peak."""
        per_layer = (weights.to(table.dtype) * table).sum(-1)
        if self.combine == "max":
            return per_layer.max().clamp(min=self.constant)  # no host-made tensor: no copy to a GPU each step
        return self.constant + per_layer.sum()


@lru_cache(maxsize=16)
def _counted(space: SearchSpace) -> tuple[dict[str, int], tuple[dict[str, dict[str, int]], ...]]:
    from spnas.latency.parts import fixed_parts, layer_parts

    fixed = {p.key: count(p.module, p.input_shape) for p in fixed_parts(space) if p.key != "overhead"}
    layers: list[dict[str, dict[str, int]]] = [{} for _ in space.layers()]
    for part in layer_parts(space):
        index, op = part.key[1:].split("/")
        layers[int(index)][op] = count(part.module, part.input_shape)
    constant = {"params": sum(f["params"] for f in fixed.values()), "macs": sum(f["macs"] for f in fixed.values()),
                "memory": max(f["memory"] for f in fixed.values())}
    return constant, tuple(layers)


def cost_tables(space: SearchSpace, precision: str = "float32") -> dict[str, CostTable]:
    """The three tables of ``space`` (memory in ``precision``'s bytes), counted once per space and cached."""
    if precision not in BYTES_PER_VALUE:
        raise SpnasError(f"unknown precision {precision!r}; choose one of: {', '.join(BYTES_PER_VALUE)}")
    constant, layers = _counted(space)
    scale = {"params": 1, "macs": 1, "memory": BYTES_PER_VALUE[precision]}
    return {m: CostTable(m, constant[m] * scale[m], tuple(tuple(layer[op][m] * scale[m] for op in MBCONV_OPS)
                                                            for layer in layers), precision)
            for m in MEASURES}


def arch_costs(space: SearchSpace, ops: tuple[str, ...], precision: str = "float32") -> dict[str, float]:
    """params, macs and memory (bytes) of the network whose layers take ``ops``."""
    return {m: table.of(ops) for m, table in cost_tables(space, precision).items()}
