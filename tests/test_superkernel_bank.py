"""The batched superkernels (nn.superkernel_bank) compute what each layer's SuperKernel defines: the same
effective weights, indicators and decisions, and the same gradients for weights and thresholds, with
dropout, frozen layers and layers that cannot be skipped."""

from __future__ import annotations

import pytest
import torch

import spnas.nn.superkernel as superkernel_module
from spnas.nn.network import SinglePathNet
from spnas.nn.superkernel import Decision
from spnas.nn.superkernel_bank import _SuperKernels
from spnas.model.space import get_space


def _net(seed: int = 0) -> SinglePathNet:
    torch.manual_seed(seed)
    net = SinglePathNet(get_space("small", width=0.35)).double()
    net.set_indicator_scale("init-norm")  # a surrogate slope that is not ~0, so gradients can be compared
    with torch.no_grad():  # thresholds near the norms: some decisions on, some off
        g = torch.Generator().manual_seed(seed)
        for block in net.searchable_blocks():
            sk, norms = block.superkernel, block.superkernel.group_norms(block.conv_dw.weight)
            for name, key in (("t_k5", "k5"), ("t_e3", "e3"), ("t_e6", "e6")):
                getattr(sk, name).fill_(norms[key] * (0.8 + 0.4 * torch.rand((), generator=g).item()))
    return net


def _reference(net: SinglePathNet) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each layer through its own SuperKernel (the per-layer definition)."""
    effective, indicators = [], []
    for block in net.searchable_blocks():
        w, d = block.superkernel(block.conv_dw.weight)
        effective.append(w)
        indicators.append(d)
    return effective, torch.stack(indicators)


def _gradients(net: SinglePathNet, effective: list[torch.Tensor], indicators: torch.Tensor, seed: int) -> list:
    net.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(seed)
    loss = sum((w * torch.randn(w.shape, generator=g, dtype=w.dtype)).sum() for w in effective)
    loss = loss + (indicators * torch.randn(indicators.shape, generator=g, dtype=indicators.dtype)).sum()
    loss.backward()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for b in net.searchable_blocks() for p in (b.conv_dw.weight, b.superkernel.t_k5,
                                                       b.superkernel.t_e3, b.superkernel.t_e6)]


def _compare(net: SinglePathNet, seed: int = 1) -> None:
    ref_w, ref_d = _reference(net)
    ref_g = _gradients(net, ref_w, ref_d, seed)
    bank_w, bank_d = net.bank(net.training)
    bank_g = _gradients(net, bank_w, bank_d, seed)
    assert torch.equal(bank_d, ref_d) or torch.allclose(bank_d, ref_d, rtol=1e-12, atol=0)
    for a, b in zip(bank_w, ref_w):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-12, atol=1e-15)
    for a, b in zip(bank_g, ref_g):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-15)
    assert any(g.abs().sum() > 0 for g in bank_g[1::4])  # thresholds did get gradient


def test_bank_matches_each_layers_superkernel():
    net = _net()
    decisions = net.decisions()
    assert len({d for d in decisions}) > 2  # a mix of ops, so every path of the arithmetic is taken
    assert not all(b.superkernel.skippable for b in net.searchable_blocks())
    _compare(net.train())


def test_bank_matches_with_frozen_layers():
    net = _net(seed=3)
    for i, block in enumerate(net.searchable_blocks()):
        if i % 3 == 0:
            block.superkernel.frozen = Decision(i % 2, 1, 0) if i % 6 else Decision(0, 0, 0)
    _compare(net.train())


def test_bank_matches_with_indicator_dropout(monkeypatch):
    net = _net(seed=5)
    net.set_indicator_keep(0.6)
    blocks = net.searchable_blocks()
    torch.manual_seed(7)
    q = torch.bernoulli(torch.full((len(blocks), 3), 0.6, dtype=torch.float64)) / 0.6
    for i, block in enumerate(blocks):
        if not block.superkernel.skippable:
            q[i, 1] = 1.0
    # the reference draws per layer in the order k5, e6, e3: hand it the same factors
    order = iter([q[i, g] for i, b in enumerate(blocks) for g in ((0, 2, 1) if b.superkernel.skippable else (0, 2))])
    monkeypatch.setattr(superkernel_module, "indicator_dropout", lambda d, keep: d * next(order))
    ref_w, ref_d = _reference(net.train())
    ref_g = _gradients(net, ref_w, ref_d, 2)
    w, t, s, _, free, fixed, layout = net.bank._inputs(dropout=False)
    effective, indicators = _SuperKernels.apply(w, t, s, q, free, fixed, layout)
    bank_w = [x.view(b.conv_dw.weight.shape) for x, b in zip(effective.split(layout.channels), blocks)]
    bank_g = _gradients(net, bank_w, indicators, 2)
    assert torch.allclose(indicators, ref_d, rtol=1e-12)
    for a, b in zip(bank_w + bank_g, ref_w + ref_g):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-15)


def test_bank_dropout_draws_per_layer_and_spares_what_cannot_drop():
    net = SinglePathNet(get_space("small", width=0.35))
    net.set_indicator_keep(0.5)
    torch.manual_seed(0)
    draws = torch.stack([net.bank(training=True)[1] for _ in range(200)])  # all decisions start on
    skippable = torch.tensor([b.superkernel.skippable for b in net.searchable_blocks()])
    assert set(draws[:, skippable].unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/keep
    assert torch.all(draws[:, ~skippable, 1] == 1.0)  # the e3 of a layer that cannot be skipped never drops
    assert draws[:, skippable].eq(0).float().mean().item() == pytest.approx(0.5, abs=0.05)
    assert torch.all(net.bank(training=False)[1] == 1.0)  # no dropout outside training


def test_bank_decisions_and_margins_agree_with_each_layer():
    net = _net(seed=9)
    state = net.decision_state()
    for block, row, margins, norms in zip(net.searchable_blocks(), state["decisions"].tolist(),
                                          state["margins"].tolist(), state["norms"].tolist()):
        sk = block.superkernel
        _, d = sk(block.conv_dw.weight)
        assert row == d.tolist()
        ref = sk.group_norms(block.conv_dw.weight)
        assert norms == pytest.approx([ref["k5"], ref["e3"], ref["e6"]], rel=1e-12)
        t, scale = sk.thresholds(), sk.indicator_scale.tolist()
        assert margins == pytest.approx([(ref[g] - t[g]) / s for g, s in zip(("k5", "e3", "e6"), scale)], rel=1e-9)
