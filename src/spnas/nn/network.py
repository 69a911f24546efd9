"""One network class for a search space: the supernet (no architecture) or a derived net (an architecture).

Searchable layers are named ``layers.L{i}`` by their index in the space, so a derived network's
state-dict keys line up with the supernet's and skipped layers are simply absent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from spnas.model.arch import Architecture
from spnas.nn.blocks import MBConv, conv_bn_act
from spnas.nn.superkernel import GROUPS, Decision, SuperKernel
from spnas.nn.superkernel_bank import SuperKernelBank
from spnas.model.space import SKIP, LayerSpec, SearchSpace, op_kernel_expand

INDICATOR_SCALES = ("absolute", "init-norm")


class SinglePathNet(nn.Module):
    def __init__(self, space: SearchSpace, arch: Architecture | None = None) -> None:
        super().__init__()
        if arch is not None:
            arch.validate(space)
        self.space = space
        self.arch = arch
        eps, mom = space.bn_eps, space.bn_momentum
        self.stem = conv_bn_act(space.in_channels, space.stem_out, 3, space.stem_stride, eps, mom)
        self.blocks_before, channels = _fixed_blocks(space, space.stem_out, space.blocks_before)

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for spec in space.layers():
            if arch is None:
                layers[f"L{spec.index}"] = self.searchable_layer(spec)
            elif arch.ops[spec.index] != SKIP:
                kernel, expand = op_kernel_expand(arch.ops[spec.index])
                layers[f"L{spec.index}"] = MBConv(
                    spec.in_channels, spec.out_channels, spec.stride, kernel, expand, eps, mom
                )
            channels = spec.out_channels
        self.layers = nn.Sequential(layers)

        self.blocks_after, channels = _fixed_blocks(space, channels, space.blocks_after)
        self.head = conv_bn_act(channels, space.head_out, 1, 1, eps, mom)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(space.dropout)
        self.classifier = nn.Linear(space.head_out, space.num_classes)
        _init_weights(self)
        #: the supernet's superkernels, computed together on every forward (None for a derived network)
        blocks = self.searchable_blocks()
        self.bank = SuperKernelBank(blocks) if blocks else None
        #: (layers, 3) indicators of the last forward pass (the supernet's)
        self._indicators: torch.Tensor | None = None

    def searchable_layer(self, spec: LayerSpec) -> nn.Module:
        """A supernet's layer at a searchable position: one MBConv through a superkernel."""
        return MBConv(spec.in_channels, spec.out_channels, spec.stride, 5, 6, self.space.bn_eps,
                      self.space.bn_momentum, superkernel=SuperKernel(spec.skippable))

    @property
    def is_supernet(self) -> bool:
        return self.arch is None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks_before(self.stem(x))
        if self.bank is not None:
            weights, self._indicators = self.bank(self.training)
            for block, weight in zip(self.layers, weights):
                x = block(x, weight)
        else:
            x = self.layers(x)
        x = self.blocks_after(x)
        return self.pool(self.head(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))

    # ------------------------------------------------------------------ supernet views
    def searchable_blocks(self) -> list[MBConv]:
        """The superkernel blocks in layer order (empty for a derived network)."""
        return [m for m in self.layers if isinstance(m, MBConv) and m.superkernel is not None]

    def set_indicator_keep(self, keep: float | None) -> None:
        """Indicator dropout for warm-up: keep probability (e.g. 0.6), or None to switch it off."""
        for block in self.searchable_blocks():
            block.superkernel.indicator_keep = keep

    def freeze(self, arch: Architecture | None) -> None:
        """Hold the decisions at ``arch`` whatever the norms and thresholds do (None: free them again)."""
        if arch is not None:
            arch.validate(self.space)
        for i, block in enumerate(self.searchable_blocks()):
            block.superkernel.frozen = None if arch is None else Decision.from_op(arch.ops[i])

    @contextmanager
    def indicator_dropout_off(self) -> Iterator["SinglePathNet"]:
        """Within the block the hard decisions act without dropout (evaluation, BN re-estimation);
        each block's keep probability is put back on exit. A derived network has none to turn off."""
        keeps = [block.superkernel.indicator_keep for block in self.searchable_blocks()]
        self.set_indicator_keep(None)
        try:
            yield self
        finally:
            for block, keep in zip(self.searchable_blocks(), keeps):
                block.superkernel.indicator_keep = keep

    @torch.no_grad()
    def set_indicator_scale(self, mode: str) -> None:
        """``absolute`` (the paper): indicator(norm - t). ``init-norm``: indicator((norm - t) / n0),
        n0 = each group's norm now (at init). The hard decisions are identical (the sign does not
        change); only the surrogate gradient widens, from sigmoid'(~10-40), which is 1e-5..1e-17,
        to sigmoid'(~1)/n0, so thresholds respond within hundreds of steps instead of thousands.
        """
        if mode not in INDICATOR_SCALES:
            raise ValueError(f"indicator scale must be one of {INDICATOR_SCALES}")
        for block in self.searchable_blocks():
            sk = block.superkernel
            if mode == "absolute":
                sk.indicator_scale.fill_(1.0)
            else:
                norms = sk.group_norms(block.conv_dw.weight)
                sk.indicator_scale.copy_(torch.tensor([norms["k5"], norms["e3"], norms["e6"]]).clamp_min(1e-6))

    def indicators(self) -> torch.Tensor:
        """(layers, 3) differentiable indicators [d_k5, d_e3, d_e6] of the last forward pass."""
        return self._indicators if self._indicators is not None else self.current_indicators()

    def current_indicators(self) -> torch.Tensor:
        """(layers, 3) indicators computed from the weights now, without dropout (differentiable)."""
        return self.bank(training=False)[1]

    def decision_state(self) -> dict[str, torch.Tensor]:
        """The hard decisions now, their margins and the group norms, as (layers, 3) tensors on the model's
        device (nothing is read to the host; see :meth:`SuperKernelBank.decisions`)."""
        return self.bank.decisions()

    def decisions(self) -> list[Decision]:
        return [Decision(*(int(v) for v in row)) for row in self.decision_state()["decisions"].tolist()]

    def architecture(self) -> Architecture:
        """The hard decisions now, as an Architecture (the search result is this at the last step)."""
        return Architecture(self.space.name, tuple(d.op for d in self.decisions()))

    @torch.no_grad()
    def force_architecture(self, arch: Architecture) -> None:
        """Set thresholds so the hard decisions spell ``arch`` (for tests, and to warm-start a search)."""
        arch.validate(self.space)
        for block, op in zip(self.searchable_blocks(), arch.ops):
            want = Decision.from_op(op)
            sk = block.superkernel
            for t in (sk.t_k5, sk.t_e3, sk.t_e6):
                t.fill_(-1.0)  # "on" for any norm (norms are >= 0)
            norms = sk.group_norms(block.conv_dw.weight)
            if not want.k5:
                sk.t_k5.fill_(norms["k5"] + 1.0)
            norms = sk.group_norms(block.conv_dw.weight)
            if not want.e6:
                sk.t_e6.fill_(norms["e6"] + 1.0)
            if not want.e3:
                sk.t_e3.fill_(norms["e3"] + 1.0)
        if self.architecture() != arch:
            raise RuntimeError("could not force the architecture (a group norm is zero?)")

    @torch.no_grad()
    def thresholds(self) -> list[dict[str, float]]:
        """Each layer's thresholds, read in one transfer."""
        rows = torch.stack([t for b in self.searchable_blocks() for t in (b.superkernel.t_k5, b.superkernel.t_e3,
                                                                            b.superkernel.t_e6)]).view(-1, 3)
        return _per_group(rows.tolist())

    def group_norms(self) -> list[dict[str, float]]:
        """The norms each layer's thresholds are compared with, under its hard decisions now."""
        return _per_group(self.decision_state()["norms"].tolist())

    def decision_margins(self) -> list[dict[str, float]]:
        """Per layer, (norm - threshold) / scale of each group: the signed distance of each hard decision
        from flipping, in the indicator's own units (the repair flips the smallest first; the landing
        orders one step's flips by when their margins crossed zero)."""
        return _per_group(self.decision_state()["margins"].tolist())


def _per_group(rows: list[list[float]]) -> list[dict[str, float]]:
    """(layers, 3) values in GROUPS order as one dict per layer."""
    return [dict(zip(GROUPS, row)) for row in rows]


def _fixed_blocks(space: SearchSpace, channels: int, blocks) -> tuple[nn.Sequential, int]:
    """The MBConv blocks the search never changes; returns them and their output channels."""
    out = []
    for block in blocks:
        width = space.ch(block.out_channels)
        out.append(MBConv(channels, width, block.stride, block.kernel, block.expand, space.bn_eps, space.bn_momentum))
        channels = width
    return nn.Sequential(*out), channels


def _init_weights(model: nn.Module) -> None:
    """He-normal convs (depthwise std sqrt(2/25) for 5x5, as SPEC §2 relies on), BN 1/0, small linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, 0.0, (2.0 / fan_out) ** 0.5)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.weight.shape[1] ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
