"""Target mode's landing: the search's own decisions settle inside the budget band (issue 18, item 3).

Why: the lambda controller keeps the hard decisions' latency swinging around its aim until the last
step, so where that step falls is chance (15-25% off the target in the runs of BENCHMARKS.md at 061b308, §3-4), and
a repair had to flip the least confident decisions afterwards. With a landing share L, the search
returns, unrepaired, hard decisions of its own from the last L of the run that lie in the repair's band
[T·(1 - 2·margin), T]. The first rule measured (``first``) freezes the first such step's decisions: the
remaining steps train the weights of that one network, as its retraining will. The default (``last``,
below) takes the last. A run that never meets the band keeps the repair as its safety net.

Where the decisions missed the band, they had jumped over it (BENCHMARKS.md at 061b308, §13): late in a search one
step can flip several decisions at once, and the band (4% of T) is narrower than some flips. So the
landing also looks inside each step: its flips taken one at a time, in the order their margins crossed
zero (:func:`path_within_step`); an in-band point of that path lands the search, recorded as
``within_step`` (how many of the step's flips it holds). Measured and dropped: restarting the
controller's integral whenever the latency crossed the aim inside the window made the decisions swing
back and forth in steps of the last stage's layers (0.04 ms, twice the band) and landed fewer runs.

Freezing the first in-band decisions cut some searches short: at 0.50 ms they froze 45-58 steps before
the end, while the plain searches, already in the band there, kept refining, and the retrained nets
lost 0.95 points there (BENCHMARKS.md at 061b308, §13). So the rule ``last`` freezes nothing: the decisions move to
the last step as in a plain search, and the search returns the last in-band decisions of the window
(the last step's own, when they are in the band). Its trajectory is the plain search's, step for step;
measured over two training seeds, its nets were as accurate as the plain search's repaired ones (78.02%
against 77.95%), with 8 of 9 results unrepaired against 3 of 9. So target-mode searches land by default
(``--landing 0.125``); ``--landing 0`` returns the last step, repaired, as before.

Rule ``last`` returns decisions of its own, but its last step lies in the band only where the plain
search's does (3 of 9 in BENCHMARKS.md at 061b308, §13): the decisions keep moving after their last in-band step,
so the search does not end on its result. The rule ``hold`` (the default since) searches as ``last``
until the last quarter of the window (:data:`HOLD_PART`), then holds the latest in-band decisions seen
so far (the current ones if in the band) to the end; a run that has not met the band by then freezes
the first in-band decisions after (rule ``first`` for the remaining steps). Measured on the same 9
warm-ups: 8 of 9 last steps in the band (``last``: 3 of 9), the same network as ``last`` in 6 of 9,
mean top-1 over two training seeds 77.86% against 78.02% (``last``) and 77.95% (the repaired last
step), no per-target difference significant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from spnas.model.arch import Architecture
from spnas.nn.superkernel import GROUPS, Decision
from spnas.search.repair import band_low, with_group

#: the default landing share (``--landing``) of a target-mode single-path search: the last 1/8 of the run, a
#: third of the part after the paper's 5/8 warm-up
DEFAULT_SHARE = 0.125
#: hold (SearchConfig's default): as last, then hold the latest in-band decisions over the window's last
#: HOLD_PART; last: freeze nothing, return the window's last in-band decisions; first: freeze its first
RULES = ("last", "first", "hold")
#: rule hold: the share of the landing window, at its end, for which the decisions are held
HOLD_PART = 0.25


def path_within_step(before: Sequence[Decision], after: Sequence[Decision], margins_before: Sequence[dict],
                     margins_after: Sequence[dict]) -> list[list[Decision]]:
    """The decisions one step passed through between ``before`` and ``after``, without ``after``: its
    flipped groups applied one at a time, in the order in which a straight move of each margin
    (norm - threshold) from before to after crosses zero, i.e. the order a smaller step would have
    flipped them in (to first order)."""
    flips = []
    for i, (b, a) in enumerate(zip(before, after)):
        for g in GROUPS:
            if getattr(b, g) != getattr(a, g):
                m0, m1 = margins_before[i][g], margins_after[i][g]
                crossing = m0 / (m0 - m1) if m0 != m1 else 0.5
                flips.append((min(max(crossing, 0.0), 1.0), i, g))
    path, decisions = [], list(before)
    for _, i, g in sorted(flips)[:-1]:
        decisions = with_group(decisions, i, g, getattr(after[i], g))
        path.append(decisions)
    return path


@dataclass
class Landing:
    target_ms: float
    low_ms: float
    #: the first step that may land
    start_step: int
    #: one of :data:`RULES`
    rule: str = "last"
    #: the landed decisions (the search's own encoding): frozen (rule first), or the latest in band (last)
    arch: str | None = None
    step: int | None = None
    #: how many of its step's flips the frozen decisions hold, when they lie inside a step that jumped
    #: over the band; None when the step's own decisions landed
    within_step: int | None = None
    #: rule hold: the first step at which the landed decisions are held (None for the other rules)
    hold_step: int | None = None
    #: the step from which the network's decisions are held at ``arch`` (rule first: its landing step), or None
    frozen_at: int | None = None

    @classmethod
    def for_run(cls, target_ms: float, margin: float, share: float, total_steps: int, warmup_steps: int,
                rule: str = "last") -> "Landing":
        """The landing of a run's last ``share``, never inside the warm-up (lambda is 0 there: the
        decisions have not yet been asked to meet anything)."""
        start = max(total_steps - round(share * total_steps), warmup_steps)
        hold = max(total_steps - round(HOLD_PART * (total_steps - start)), start) if rule == "hold" else None
        return cls(target_ms, band_low(target_ms, margin), start, rule, hold_step=hold)

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None

    def takes_first(self, step: int) -> bool:
        """Whether ``step``'s first in-band decisions (and the first in-band point of its path) land: rule first,
        and rule hold from its hold step on; otherwise the latest in-band ones do."""
        return self.rule == "first" or (self.hold_step is not None and step >= self.hold_step)

    def freeze_now(self, step: int) -> Architecture | None:
        """The decisions to hold from ``step`` on, once: the landed ones, when the rule freezes them by this
        step (rule first: at once; hold: from its hold step); None otherwise, and once they are held."""
        if self.frozen or self.arch is None or not self.takes_first(step):
            return None
        self.frozen_at = step
        return self.landed

    @property
    def landed(self) -> Architecture | None:
        return None if self.arch is None else Architecture.from_string(self.arch)

    def open_at(self, step: int) -> bool:
        """Whether ``step`` may (still) land: inside the window, and not frozen yet."""
        return step >= self.start_step and not self.frozen

    def update(self, step: int, arch: Architecture, hard_ms: float,
               path: Sequence[tuple[Architecture, float]] = (),
               fits: Callable[[tuple[str, ...]], bool] = lambda ops: True) -> Architecture | None:
        """Land on and return the step's decisions ``arch`` if they lie in the band, else on an in-band point
        of the step's ``path`` (:func:`path_within_step`, priced): its first where the first landing counts
        (:meth:`takes_first`), else its last (the nearest to the step's end); None if neither. ``fits``: the
        other budgets (``--max-params`` ...) that a landing must meet too."""
        if not self.open_at(step):
            return None
        points = list(enumerate(path, start=1))
        for flips, (candidate, ms) in [(0, (arch, hard_ms)), *(points if self.takes_first(step) else points[::-1])]:
            if self.low_ms <= ms <= self.target_ms and fits(candidate.ops):
                self.arch, self.step, self.within_step = candidate.to_string(), step, flips or None
                return candidate
        return None

    def state_dict(self) -> dict:
        return {"arch": self.arch, "step": self.step, "within_step": self.within_step, "rule": self.rule,
                "frozen_at": self.frozen_at}

    def load_state_dict(self, state: dict) -> None:
        self.arch, self.step, self.within_step = state["arch"], state["step"], state.get("within_step")
        # checkpoints from before rule hold: only rule first froze, at its landing step
        legacy = self.step if self.rule == "first" and self.arch is not None else None
        self.frozen_at = state.get("frozen_at", legacy)
