"""Target mode's landing: the search's own decisions settle inside the budget band (issue 18, item 3).

Why: the lambda controller keeps the hard decisions' latency swinging around its aim until the last
step, so where that step falls is chance (15-25% off the target in the runs of BENCHMARKS.md §3-4), and
a repair had to flip the least confident decisions afterwards. With a landing share L, the first step
in the last L of the run whose hard decisions lie in the repair's band [T·(1 - 2·margin), T] freezes
them: the remaining steps train the weights of that one network, as its retraining will, and the
search returns it unrepaired. A run that never meets the band keeps the repair as its safety net.
"""

from __future__ import annotations

from dataclasses import dataclass

from spnas.model.arch import Architecture
from spnas.search.repair import band_low

#: the landing share of ``spnas sweep``'s single-path-landing variant: the last 1/8 of a search, a third
#: of the part after the paper's 5/8 warm-up
SWEEP_SHARE = 0.125


@dataclass
class Landing:
    target_ms: float
    low_ms: float
    #: the first step that may freeze the decisions
    start_step: int
    #: the frozen decisions (the search's own encoding), once landed
    arch: str | None = None
    step: int | None = None

    @classmethod
    def for_run(cls, target_ms: float, margin: float, share: float, total_steps: int, warmup_steps: int) -> "Landing":
        """The landing of a run's last ``share``, never inside the warm-up (lambda is 0 there: the
        decisions have not yet been asked to meet anything)."""
        return cls(target_ms, band_low(target_ms, margin), max(total_steps - round(share * total_steps), warmup_steps))

    @property
    def landed(self) -> Architecture | None:
        return None if self.arch is None else Architecture.from_string(self.arch)

    def update(self, step: int, arch: Architecture, hard_ms: float) -> bool:
        """Freeze ``arch`` (True) if it is the first in-band decision of the landing window."""
        if self.arch is not None or step < self.start_step or not self.low_ms <= hard_ms <= self.target_ms:
            return False
        self.arch, self.step = arch.to_string(), step
        return True

    def state_dict(self) -> dict:
        return {"arch": self.arch, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.arch, self.step = state["arch"], state["step"]
