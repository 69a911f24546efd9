"""Parameter and multiply-add counts of a network, by running it once on a dummy input."""

from __future__ import annotations

import torch
from torch import nn

from spnas.model.space import SearchSpace


def count_params(model: nn.Module) -> int:
    """Trainable parameters, excluding superkernel thresholds (they are not part of a deployed net)."""
    return sum(p.numel() for n, p in model.named_parameters() if ".superkernel." not in n)


@torch.no_grad()
def count_macs(model: nn.Module, space: SearchSpace) -> int:
    """Multiply-adds of convolutions and linear layers for one image (the usual 'FLOPs' of NAS papers)."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, space.in_channels, space.input_size, space.input_size))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
