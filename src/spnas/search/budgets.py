"""Budgets beside latency: ``--max-params``, ``--max-macs`` and ``--max-memory`` (peak activation bytes at
batch 1), each an upper bound that the searched network must meet.

Each is priced as latency is (:mod:`spnas.model.costs`): exactly for the hard decisions, differentiably for
the supernet from the same op mixture as the latency term. Each has its own controller (the latency
target's PI controller, one-sided: its lambda starts at 0 and never turns negative, so a budget pushes
only while the hard decisions exceed its aim, ``margin`` under the limit) and its own loss term,
lambda·1000·ln(cost), like the runtime term. The landing takes only decisions inside every budget, and
the repair flips decisions off until every budget holds (:mod:`spnas.search.repair`).

A budget no network of the space can meet is refused before anything runs, naming the smallest value
the space reaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from spnas.errors import SpnasError
from spnas.model.costs import UNITS, CostTable, cost_tables
from spnas.model.space import SearchSpace
from spnas.search.objective import TargetController

#: the search option of each measure
OPTIONS = {"params": "--max-params", "macs": "--max-macs", "memory": "--max-memory"}


@dataclass
class Budget:
    measure: str
    limit: float
    table: CostTable
    controller: TargetController
    _tensor: torch.Tensor | None = field(default=None, repr=False)

    def table_on(self, device: torch.device) -> torch.Tensor:
        if self._tensor is None or self._tensor.device != device:
            self._tensor = self.table.tensor(device)
        return self._tensor


@dataclass
class Budgets:
    """The budgets a search was given (possibly none)."""

    items: list[Budget] = field(default_factory=list)

    @classmethod
    def of(cls, cfg, space: SearchSpace, precision: str = "float32") -> "Budgets":
        """The budgets in ``cfg`` (``max_params``, ``max_macs``, ``max_memory``); a limit below what the
        space's smallest network costs is refused."""
        limits = {m: getattr(cfg, f"max_{m}", None) for m in OPTIONS}
        if all(v is None for v in limits.values()):
            return cls()
        tables = cost_tables(space, precision)
        items = []
        for measure, limit in limits.items():
            if limit is None:
                continue
            least = tables[measure].smallest(space)
            if least > limit:
                raise SpnasError(f"{OPTIONS[measure]} {limit:,.0f}: no network of the space is that small; its "
                                 f"smallest reaches {least:,.0f} {UNITS[measure]}")
            controller = TargetController(limit, lam=0.0, margin=cfg.target_margin, rate=cfg.lambda_rate,
                                          gain=cfg.lambda_gain, lam_min=0.0)
            items.append(Budget(measure, float(limit), tables[measure], controller))
        return cls(items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def values(self, ops) -> dict[str, float]:
        return {b.measure: b.table.of(ops) for b in self.items}

    def fits(self, ops) -> bool:
        """Whether the network of ``ops`` is inside every budget."""
        return all(b.table.of(ops) <= b.limit for b in self.items)

    def term(self, weights: torch.Tensor) -> torch.Tensor | float:
        """sum over budgets of lambda·1000·ln(cost) of the op mixture ``weights`` (layers, 4)."""
        total: torch.Tensor | float = 0.0
        for b in self.items:
            cost = b.table.differentiable(weights, b.table_on(weights.device))
            lam = b.controller.lam
            factor = (lam * 1000.0).to(weights.dtype) if isinstance(lam, torch.Tensor) else lam * 1000.0
            total = total + factor * torch.log(cost.to(weights.dtype))
        return total

    def update(self, hard_weights: torch.Tensor) -> None:
        """Each controller on its budget's cost of the hard decisions (on the device: nothing read)."""
        for b in self.items:
            b.controller.update(b.table.differentiable(hard_weights, b.table_on(hard_weights.device)))

    def report(self, ops) -> dict[str, dict]:
        """Per budget: its limit, the network's value and the share of the limit it uses."""
        return {b.measure: {"limit": b.limit, "value": b.table.of(ops), "used": b.table.of(ops) / b.limit,
                            "lambda": float(b.controller.lam)} for b in self.items}

    def state_dict(self) -> dict:
        return {b.measure: b.controller.state_dict() for b in self.items}

    def load_state_dict(self, state: dict) -> None:
        for b in self.items:
            if b.measure in state:
                b.controller.load_state_dict(state[b.measure])


def bound_by(ratios: dict[str, float]) -> str | None:
    """The budget closest to its limit (value / limit highest): the one that bound the result."""
    return max(ratios, key=ratios.get) if ratios else None
