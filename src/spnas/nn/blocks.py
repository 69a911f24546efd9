"""The MBConv block, used unchanged by the supernet (with a superkernel) and by derived networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spnas.nn.superkernel import SuperKernel


def conv_bn_act(
    in_ch: int, out_ch: int, kernel: int, stride: int, bn_eps: float, bn_momentum: float,
    groups: int = 1, act: bool = True,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand -> BN -> ReLU] -> kxk depthwise -> BN -> ReLU -> 1x1 project -> BN.

    With ``searchable=True`` the block is built as k5e6 and its depthwise weight passes through a
    :class:`SuperKernel` on every forward; otherwise it is a plain block of the given kernel/expansion.
    Sharing the class keeps parameter names identical, so copying supernet weights into a derived
    network is slicing, not renaming.
    """

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int, expand: int,
        bn_eps: float = 1e-3, bn_momentum: float = 0.01,
        searchable: bool = False, skippable: bool = False,
    ) -> None:
        super().__init__()
        if searchable:
            kernel, expand = 5, 6
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.kernel, self.expand = kernel, expand
        mid = in_ch * expand
        self.expand_conv = (
            conv_bn_act(in_ch, mid, 1, 1, bn_eps, bn_momentum) if expand != 1 else nn.Identity()
        )
        self.dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid, eps=bn_eps, momentum=bn_momentum)
        self.project = conv_bn_act(mid, out_ch, 1, 1, bn_eps, bn_momentum, act=False)
        self.has_residual = stride == 1 and in_ch == out_ch
        self.superkernel = SuperKernel(skippable) if searchable else None
        #: indicators [d_k5, d_e3, d_e6] of the last forward pass (searchable blocks only)
        self.indicators: torch.Tensor | None = None

    def depthwise(self, x: torch.Tensor) -> torch.Tensor:
        if self.superkernel is None:
            return self.dw(x)
        weight, self.indicators = self.superkernel(self.dw.weight)
        return F.conv2d(x, weight, None, self.stride, self.kernel // 2, groups=weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand_conv(x)
        y = F.relu(self.dw_bn(self.depthwise(y)))
        y = self.project(y)
        return x + y if self.has_residual else y
