"""Target mode's last step: make the returned architecture meet the budget band.

The search's result is its hard decisions at the last step. With ``--target-ms`` the user asked for a
budget, so if those decisions land outside [T·(1 - 2·margin), T] we flip the *least confident*
decisions (smallest |norm - threshold| / scale) until they do: first switching groups off while over
T, then back on while far under it. The flips are recorded next to the unrepaired result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spnas.model.arch import Architecture
from spnas.latency.lut import LatencyTable
from spnas.latency.predict import predict_ms
from spnas.nn.network import SinglePathNet
from spnas.nn.superkernel import Decision

if TYPE_CHECKING:
    from spnas.search.budgets import Budgets


@dataclass
class Repair:
    arch: Architecture
    flips: list[dict] = field(default_factory=list)


def with_group(decisions: list[Decision], layer: int, group: str, value: int) -> list[Decision]:
    """``decisions`` with one group of one layer set to ``value`` (a copy)."""
    out = list(decisions)
    d = out[layer]
    out[layer] = Decision(**{**{"k5": d.k5, "e3": d.e3, "e6": d.e6}, group: value})
    return out


def architecture_of(space_name: str, decisions: list[Decision]) -> Architecture:
    return Architecture(space_name, tuple(d.op for d in decisions))


def band_low(target_ms: float, margin: float) -> float:
    """The lower end of the budget band [T·(1 - 2·margin), T] that target mode's results must meet
    (the repair, the landing, random search's draws and the sweep's report all use this one)."""
    return target_ms * (1 - 2 * margin)


def canonical_price(lut: LatencyTable, space_name: str, decisions: list[Decision]) -> float:
    """The latency of the network the decisions spell, priced in canonical form: what the search
    reports and the user sees, so a repaired result is inside the band as reported."""
    return predict_ms(lut, architecture_of(space_name, decisions).canonical())


def repair_to_budget(net: SinglePathNet, lut: LatencyTable, target_ms: float | None, margin: float,
                     budgets: "Budgets | None" = None) -> Repair:
    """Flip the least confident decisions off while the latency is over ``target_ms`` or a budget is exceeded
    (every flip off shrinks every measure), then on while the latency is under the band and a flip keeps
    it and every budget in (with a target)."""
    decisions = net.decisions()
    layers = net.space.layers()
    confidence = [{g: abs(m) for g, m in layer.items()} for layer in net.decision_margins()]
    lower = band_low(target_ms, margin) if target_ms is not None else 0.0
    flips: list[dict] = []

    def groups(value: int):
        for i, d in enumerate(decisions):
            for g in ("k5", "e6", "e3"):
                if g == "e3" and not layers[i].skippable:
                    continue
                if g != "e3" and not d.e3:
                    continue  # a skipped layer's other groups change nothing
                if getattr(d, g) == value:
                    yield confidence[i][g], i, g

    def fits(candidate: list[Decision]) -> bool:
        return budgets is None or budgets.fits(architecture_of(net.space.name, candidate).ops)

    ms = canonical_price(lut, net.space.name, decisions)
    while (target_ms is not None and ms > target_ms) or not fits(decisions):
        options = sorted(groups(1))
        if not options:
            break
        _, i, g = options[0]
        decisions = with_group(decisions, i, g, 0)
        ms = canonical_price(lut, net.space.name, decisions)
        flips.append({"layer": i, "group": g, "to": 0, "predicted_ms": ms})
    while target_ms is not None and ms < lower:
        for _, i, g in sorted(groups(0)):
            trial = with_group(decisions, i, g, 1)
            trial_ms = canonical_price(lut, net.space.name, trial)
            if trial_ms <= target_ms and fits(trial):
                decisions, ms = trial, trial_ms
                flips.append({"layer": i, "group": g, "to": 1, "predicted_ms": ms})
                break
        else:
            break
    return Repair(architecture_of(net.space.name, decisions), flips)
