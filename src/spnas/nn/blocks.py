"""The MBConv block, used unchanged by the supernet (with a superkernel) and by derived networks."""

from __future__ import annotations

from functools import partial
from typing import Callable

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


#: parameter names of checkpoints written before the sub-layers had names (spnas < 0.2) -> now
_OLD_NAMES = {"expand_conv.0.": "conv_pw.", "expand_conv.1.": "bn1.", "dw_bn.": "bn2.", "dw.": "conv_dw.",
              "project.0.": "conv_pwl.", "project.1.": "bn3."}


def batchnorm(eps: float, momentum: float) -> Callable[[int], nn.Module]:
    """The default norm layer of :class:`MBConv`: BatchNorm with the space's epsilon and momentum."""
    return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)


class MBConv(nn.Module):
    """Inverted residual: [conv_pw 1x1 -> bn1 -> ReLU] -> conv_dw kxk -> bn2 -> ReLU -> conv_pwl 1x1 -> bn3
    (timm's names). ``norm_layer(channels)`` makes the norms (default: BatchNorm, see :func:`batchnorm`).

    With a ``superkernel`` the block is the supernet's (build it as k5e6): its depthwise weight passes
    through the :class:`SuperKernel` on every forward; without, it is a plain block of the given
    kernel and expansion. Sharing the class keeps parameter names identical, so copying supernet
    weights into a derived network is slicing, not renaming.
    """

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, kernel: int, expand: int,
        bn_eps: float = 1e-3, bn_momentum: float = 0.01, superkernel: SuperKernel | None = None,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if superkernel is not None and (kernel, expand) != (5, 6):
            raise ValueError(f"a superkernel block is k5e6 (every candidate is a part of it), not k{kernel}e{expand}")
        norm = norm_layer or batchnorm(bn_eps, bn_momentum)
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.kernel, self.expand = kernel, expand
        mid = in_ch * expand
        self.conv_pw = nn.Conv2d(in_ch, mid, 1, bias=False) if expand != 1 else None
        self.bn1 = norm(mid) if expand != 1 else None
        self.conv_dw = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.bn2 = norm(mid)
        self.conv_pwl = nn.Conv2d(mid, out_ch, 1, bias=False)
        self.bn3 = norm(out_ch)
        self.has_residual = stride == 1 and in_ch == out_ch
        self.superkernel = superkernel
        #: indicators [d_k5, d_e3, d_e6] of the last forward pass (searchable blocks only)
        self.indicators: torch.Tensor | None = None
        self._register_load_state_dict_pre_hook(_rename_old_keys)

    def depthwise(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The depthwise convolution, with ``weight`` (the supernet's masked weight, which its
        :class:`~spnas.nn.superkernel_bank.SuperKernelBank` computes for all layers at once) or the block's
        own: a superkernel block called on its own masks its weight through its :class:`SuperKernel`."""
        if weight is None:
            if self.superkernel is None:
                return self.conv_dw(x)
            weight, self.indicators = self.superkernel(self.conv_dw.weight)
        return F.conv2d(x, weight, None, self.stride, self.kernel // 2, groups=weight.shape[0])

    def forward(self, x: torch.Tensor, dw_weight: torch.Tensor | None = None) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv_pw(x))) if self.conv_pw is not None else x
        y = F.relu(self.bn2(self.depthwise(y, dw_weight)))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_residual else y


def _rename_old_keys(state_dict: dict, prefix: str, *args) -> None:
    """Load checkpoints and models saved with the old positional names (see ``_OLD_NAMES``)."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        for old, new in _OLD_NAMES.items():
            if rest.startswith(old):
                state_dict[prefix + new + rest[len(old):]] = state_dict.pop(key)
                break
