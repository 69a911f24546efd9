"""The superkernel: one 5x5 depthwise kernel over 6*C_in channels that encodes all four MBConv ops.

Only the depthwise weight is masked (SPEC §2): the 3x3 op is its centre, expansion 3 its first half of
channels, and skip (where allowed) switches off the first half too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spnas.nn.indicator import indicator, indicator_dropout
from spnas.model.space import SKIP, op_kernel_expand, op_name


#: the decision groups of a layer, in the indicators' order [d_k5, d_e3, d_e6]
GROUPS = ("k5", "e3", "e6")


@dataclass(frozen=True)
class Decision:
    """Hard decisions of one layer: d_k5 (5x5 ring on), d_e3 (layer on), d_e6 (second half on)."""

    k5: int
    e3: int
    e6: int

    @property
    def op(self) -> str:
        if not self.e3:
            return SKIP
        return op_name(5 if self.k5 else 3, 6 if self.e6 else 3)

    @classmethod
    def from_op(cls, op: str) -> "Decision":
        if op == SKIP:
            return cls(0, 0, 0)
        kernel, expand = op_kernel_expand(op)
        return cls(int(kernel == 5), 1, int(expand == 6))


class SuperKernel(nn.Module):
    """Thresholds of one searchable layer and the masking rule that turns them into a kernel."""

    def __init__(self, skippable: bool) -> None:
        """The superkernel is 5x5 (its 3x3 centre is the k3 candidate) over a k5e6 block's depthwise weight."""
        super().__init__()
        self.skippable = skippable
        self.t_k5 = nn.Parameter(torch.zeros(()))
        self.t_e3 = nn.Parameter(torch.zeros(()))
        self.t_e6 = nn.Parameter(torch.zeros(()))
        core = torch.zeros(1, 1, 5, 5)
        core[..., 1:4, 1:4] = 1.0
        self.register_buffer("core_mask", core, persistent=False)
        self.register_buffer("ring_mask", 1.0 - core, persistent=False)
        #: divisors of (norm - threshold) for the k5, e3, e6 indicators; 1 = the paper's absolute
        #: scale. See SinglePathNet.set_indicator_scale.
        self.register_buffer("indicator_scale", torch.ones(3))
        #: keep probability of indicator dropout, or None for off (set by the search schedule)
        self.indicator_keep: float | None = None
        #: decisions held fixed whatever the norms and thresholds (a search's landing), or None
        self.frozen: Decision | None = None

    def _maybe_drop(self, d: torch.Tensor) -> torch.Tensor:
        if self.training and self.indicator_keep is not None and self.indicator_keep < 1.0:
            return indicator_dropout(d, self.indicator_keep)
        return d

    def forward(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (effective depthwise weight, indicators [d_k5, d_e3, d_e6]) in the SPEC's order."""
        half = weight.shape[0] // 2
        core = weight * self.core_mask
        ring = weight * self.ring_mask
        if self.frozen is not None:  # constants: the thresholds get no gradient, the decisions never flip
            d_k5, d_e3, d_e6 = (weight.new_tensor(float(v)) for v in (self.frozen.k5, self.frozen.e3, self.frozen.e6))
            masked = core + d_k5 * ring
            return d_e3 * torch.cat([masked[:half], d_e6 * masked[half:]], dim=0), torch.stack([d_k5, d_e3, d_e6])
        s_k5, s_e3, s_e6 = self.indicator_scale.unbind()
        d_k5 = self._maybe_drop(indicator((torch.linalg.vector_norm(ring) - self.t_k5) / s_k5))
        masked = core + d_k5 * ring
        d_e6 = self._maybe_drop(indicator((torch.linalg.vector_norm(masked[half:]) - self.t_e6) / s_e6))
        if self.skippable:
            d_e3 = self._maybe_drop(indicator((torch.linalg.vector_norm(masked[:half]) - self.t_e3) / s_e3))
        else:
            d_e3 = torch.ones_like(d_k5)
        effective = d_e3 * torch.cat([masked[:half], d_e6 * masked[half:]], dim=0)
        return effective, torch.stack([d_k5, d_e3, d_e6])

    @torch.no_grad()
    def group_norms(self, weight: torch.Tensor) -> dict[str, float]:
        """Norms compared with each threshold under the current (hard, dropout-free) decisions."""
        half = weight.shape[0] // 2
        ring_norm = torch.linalg.vector_norm(weight * self.ring_mask)
        d_k5 = (ring_norm >= self.t_k5).to(weight.dtype)
        masked = weight * self.core_mask + d_k5 * weight * self.ring_mask
        return {
            "k5": float(ring_norm),
            "e3": float(torch.linalg.vector_norm(masked[:half])),
            "e6": float(torch.linalg.vector_norm(masked[half:])),
        }

    def thresholds(self) -> dict[str, float]:
        return {"k5": self.t_k5.item(), "e3": self.t_e3.item(), "e6": self.t_e6.item()}
