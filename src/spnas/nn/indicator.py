"""The single-path indicator: hard 0/1 forward, sigmoid-derivative backward (straight-through)."""

from __future__ import annotations

import torch


class _HardIndicator(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # sigmoid(x) * sigmoid(-x) == sigmoid'(x), without the float32 underflow of s * (1 - s) at
        # |x| > ~17 (group norms start at 10-40, so that form would zero most threshold gradients)
        return grad * torch.sigmoid(x) * torch.sigmoid(-x)


def indicator(x: torch.Tensor) -> torch.Tensor:
    """``1[x >= 0]`` in the forward pass; d/dx sigmoid(x) in the backward pass (no temperature).

    The released code uses exactly this pair, so the threshold gradient is tiny while norms are far
    from the threshold; RMSProp's gradient normalisation is what makes thresholds move anyway.
    """
    return _HardIndicator.apply(x)


def indicator_dropout(d: torch.Tensor, keep: float) -> torch.Tensor:
    """Zero the indicator with probability ``1 - keep``, else scale by ``1 / keep`` (warm-up only)."""
    mask = torch.bernoulli(torch.full_like(d, keep))
    return d * mask / keep
