"""Latency prediction from a LUT: exact for a discrete architecture, differentiable for a supernet.

Two differentiable formulas, both equal to the discrete sum whenever the indicators are 0/1 (the paper
formula only under the ratio assumption below):
- ``exact`` (default): a bilinear mix of all four measured entries,
  R_l = d_e3 * [(1-k)(1-e) k3e3 + (1-k) e k3e6 + k (1-e) k5e3 + k e k5e6],  k = d_k5, e = d_e6.
- ``paper``: the released code, which never reads k3e3 and assumes the 3x3/5x5 ratio of e6 holds for e3:
  rho = k3e6 / k5e6;  R_l = d_e3 * (k5e3 + e (k5e6 - k5e3)) * (rho + (1 - rho) k).
"""

from __future__ import annotations

import torch

from spnas.model.arch import Architecture
from spnas.errors import SpnasError
from spnas.latency.lut import LatencyTable, op_weights
from spnas.model.space import MBCONV_OPS, SKIP

FORMULAS = ("exact", "paper")


def predict_ms(lut: LatencyTable, arch: Architecture, calibrated: bool = True) -> float:
    """Sum of exact entries (skip costs 0) plus the constant; calibrated if the LUT carries one."""
    if len(arch.ops) != len(lut.layers):
        raise SpnasError(f"architecture has {len(arch.ops)} layers, LUT has {len(lut.layers)}")
    total = lut.constant_ms + sum(row[op] for row, op in zip(lut.layers, arch.ops) if op != SKIP)
    return lut.calibration.apply(total, op_weights(arch.ops)) if calibrated and lut.calibration else total


def lut_tensor(lut: LatencyTable, device: torch.device | str | None = None) -> torch.Tensor:
    """(layers, 4) table in MBCONV_OPS order."""
    return torch.tensor([[row[op] for op in MBCONV_OPS] for row in lut.layers], dtype=torch.float32,
                        device=device)


def op_mixture(indicators: torch.Tensor) -> torch.Tensor:
    """(layers, 4): each op's weight in MBCONV_OPS order from (layers, 3) indicators [d_k5, d_e3, d_e6]
    (bilinear: 0/1 for hard indicators, one 1 per present layer, none for a skipped one). What the exact
    latency formula and the other budgets (:mod:`spnas.model.costs`) mix their tables with."""
    k, on, e = indicators.unbind(-1)
    return on[:, None] * torch.stack([(1 - k) * (1 - e), (1 - k) * e, k * (1 - e), k * e], -1)


def differentiable_ms(
    lut: LatencyTable, indicators: torch.Tensor, formula: str = "exact", calibrated: bool = True,
    table: torch.Tensor | None = None,
) -> torch.Tensor:
    """Predicted ms from (layers, 3) indicators [d_k5, d_e3, d_e6]; gradients reach every threshold."""
    if formula not in FORMULAS:
        raise SpnasError(f"unknown runtime formula {formula!r}; choose one of: {', '.join(FORMULAS)}")
    if table is None:
        table = lut_tensor(lut, indicators.device)
    k, on, e = indicators.unbind(-1)
    k3e3, k3e6, k5e3, k5e6 = table.unbind(-1)
    weights = op_mixture(indicators)  # the calibration's weights too
    if formula == "exact":
        per_layer = (weights * table).sum(-1)
    else:
        rho = k3e6 / k5e6
        per_layer = on * (k5e3 + e * (k5e6 - k5e3)) * (rho + (1 - rho) * k)
    total = lut.constant_ms + per_layer.sum()
    return lut.calibration.apply(total, weights) if calibrated and lut.calibration else total
