"""Turn a supernet into a standalone network for its current decisions, with the same function.

The supernet masks only the depthwise kernel (SPEC §2), so a switched-off channel still emits the
constant ReLU(BN(0)) into the projection, and a skipped layer still adds a constant to its input.
A derived network drops those channels and layers; to compute the same function in eval mode we
fold each such constant into a BatchNorm that survives (the projection BN's running mean, or the
output bias of the preceding layer). Nothing is approximated: the logits agree to float precision.
"""

from __future__ import annotations

import torch
from torch import nn

from spnas.model.arch import Architecture
from spnas.nn.blocks import MBConv
from spnas.nn.network import SinglePathNet
from spnas.model.space import SKIP, op_kernel_expand


def derive(supernet: SinglePathNet, arch: Architecture | None = None) -> SinglePathNet:
    """A derived network for ``arch`` (default: the supernet's current decisions), weights copied."""
    if not supernet.is_supernet:
        raise ValueError("derive() takes a supernet")
    arch = arch or supernet.architecture()
    net = SinglePathNet(supernet.space, arch)
    copy_supernet_weights(supernet, net)
    return net


@torch.no_grad()
def copy_supernet_weights(supernet: SinglePathNet, net: SinglePathNet) -> None:
    """Copy every weight of ``supernet`` that ``net``'s architecture uses, folding masked constants."""
    for name in ("stem", "blocks_before", "blocks_after", "head", "classifier"):
        getattr(net, name).load_state_dict(getattr(supernet, name).state_dict())
    sup_layers = dict(supernet.layers.named_children())
    last_present: MBConv | None = None
    for spec, op in zip(supernet.space.layers(), net.arch.ops):
        src = sup_layers[f"L{spec.index}"]
        if op == SKIP:
            if last_present is None:  # cannot happen in valid spaces: stage starts are never skippable
                raise ValueError(f"layer {spec.index} is skipped with no layer before it to absorb it")
            last_present.bn3.bias += _masked_block_output(src, 0)
            continue
        dst = getattr(net.layers, f"L{spec.index}")
        _copy_block(src, dst, op)
        last_present = dst


def _copy_block(src: MBConv, dst: MBConv, op: str) -> None:
    kernel, expand = op_kernel_expand(op)
    mid = src.in_ch * expand
    keep = slice(0, mid)
    if src.conv_pw is not None:
        dst.conv_pw.weight.copy_(src.conv_pw.weight[keep])
        _copy_bn(src.bn1, dst.bn1, keep)
    weight = src.conv_dw.weight[keep]
    if kernel == 3:
        weight = weight[..., 1:4, 1:4]
    dst.conv_dw.weight.copy_(weight)
    _copy_bn(src.bn2, dst.bn2, keep)
    dst.conv_pwl.weight.copy_(src.conv_pwl.weight[:, keep])
    _copy_bn(src.bn3, dst.bn3, slice(None))
    # channels [mid, 6*C_in) saw a zero kernel: their constant output feeds the projection
    dst.bn3.running_mean -= _dropped_channel_contribution(src, mid)


def _dropped_channel_contribution(block: MBConv, first_dropped: int) -> torch.Tensor:
    """Projection-conv output (before BN) caused by channels >= first_dropped under a zero kernel."""
    bn = block.bn2
    const = bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
    const = torch.relu(const)[first_dropped:]
    return block.conv_pwl.weight[:, first_dropped:, 0, 0] @ const


def _masked_block_output(block: MBConv, first_dropped: int) -> torch.Tensor:
    """What a block adds to its input when every depthwise channel from first_dropped on is zero."""
    bn = block.bn3
    z = _dropped_channel_contribution(block, first_dropped)
    return (z - bn.running_mean) * bn.weight / torch.sqrt(bn.running_var + bn.eps) + bn.bias


def _copy_bn(src: nn.BatchNorm2d, dst: nn.BatchNorm2d, keep: slice) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[keep])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
