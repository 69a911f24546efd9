"""Every searchable layer's superkernel computed together: a fixed, small number of kernels per step.

:class:`~spnas.nn.superkernel.SuperKernel` is the definition (SPEC §2), one layer at a time: about 30
ATen ops forward and 75 backward per layer, each a kernel launch on a GPU, so a 22-layer supernet paid
~2,300 launches a step for its masks and norms alone, more than its convolutions. The bank computes the
same function for all layers at once on the depthwise weights laid side by side, one 5x5 kernel per row
(``M`` rows in all): the group norms are per-row sums of squares added up per (layer, half) with one
``index_add_``, the decisions and indicators are (layers, 3) tensors, and the backward pass is written
out in the same vectorised form. About 40 ops forward and 45 backward, whatever the number of layers;
``tests/test_superkernel_bank.py`` checks values and gradients against :class:`SuperKernel`.

The arithmetic, per layer (r = ring part of the weight, c = core part, the two halves of channels A and B,
d = indicator x dropout factor q, H the hard indicator with the sigmoid' surrogate gradient):
    n_k5 = ||r||,  d_k5 = H((n_k5 - t_k5) / s_k5) q_k5
    m = c + d_k5 r,  n_e3 = ||m_A|| = sqrt(||c_A||² + d_k5² ||r_A||²),  n_e6 = ||m_B|| likewise
    d_e3 = H((n_e3 - t_e3) / s_e3) q_e3 (1 where the layer cannot be skipped),  d_e6 likewise
    effective weight = [d_e3 m_A ; d_e3 d_e6 m_B]
Frozen layers (a landing's held decisions) take their decisions as constants: no threshold gradient,
no dropout, as :class:`SuperKernel` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spnas.nn.indicator import indicator_dropout

#: a superkernel is 5x5: each depthwise channel is one row of 25 weights
TAPS = 25


@dataclass
class _Layout:
    """Where each layer's rows lie in the side-by-side weights (built once per device)."""

    channels: list[int]
    #: (M,) the layer of each row, and its (layer, half) segment: 2 * layer + (row in the second half)
    row_layer: torch.Tensor
    row_segment: torch.Tensor
    #: (25,) 1 on the ring of the 5x5 kernel (the taps outside its 3x3 centre)
    ring: torch.Tensor
    #: (L,) whether each layer may be skipped (its e3 decision is searched)
    skippable: torch.Tensor

    @classmethod
    def build(cls, channels: list[int], skippable: list[bool], device: torch.device) -> "_Layout":
        layer, segment = [], []
        for i, c in enumerate(channels):
            half = c // 2
            layer += [i] * c
            segment += [2 * i] * half + [2 * i + 1] * (c - half)
        ring = torch.ones(5, 5)
        ring[1:4, 1:4] = 0.0
        return cls(channels, torch.tensor(layer, device=device), torch.tensor(segment, device=device),
                   ring.view(TAPS).to(device), torch.tensor(skippable, device=device))


def _sigmoid_slope(x: torch.Tensor) -> torch.Tensor:
    """sigmoid'(x) as sigmoid(x) sigmoid(-x): no float32 underflow far from 0 (see nn.indicator)."""
    return torch.sigmoid(x) * torch.sigmoid(-x)


def _decide(w: torch.Tensor, t: torch.Tensor, s: torch.Tensor, q: torch.Tensor, free: torch.Tensor,
            fixed: torch.Tensor, layout: _Layout) -> dict[str, torch.Tensor]:
    """The forward arithmetic up to the decisions, for all layers (see the module docstring)."""
    L = len(layout.channels)
    r = w * layout.ring
    c = w - r  # w * core mask, exactly
    squares = torch.stack([(r * r).sum(1), (c * c).sum(1)], 1)  # (M, 2): ring, core
    S = torch.zeros(2 * L, 2, dtype=w.dtype, device=w.device).index_add_(0, layout.row_segment, squares).view(L, 2, 2)
    ring_sq, core_sq = S.unbind(2)  # (L, 2): per half of each layer
    n1 = ring_sq.sum(1).sqrt()
    x1 = (n1 - t[:, 0]) / s[:, 0]
    h1 = torch.where(free, (x1 >= 0).to(w.dtype), fixed[:, 0])
    d1 = h1 * q[:, 0]
    halves = (core_sq + (d1 * d1)[:, None] * ring_sq).sqrt()  # (L, 2): n_e3 (first half), n_e6 (second)
    x36 = (halves - t[:, 1:]) / s[:, 1:]
    h36 = torch.where(free[:, None], (x36 >= 0).to(w.dtype), fixed[:, 1:])
    h3 = torch.where(layout.skippable | ~free, h36[:, 0], torch.ones_like(h1))  # frozen: as held
    d3, d6 = h3 * q[:, 1], h36[:, 1] * q[:, 2]
    return {"r": r, "c": c, "ring_sq": ring_sq, "n1": n1, "x1": x1, "d1": d1, "halves": halves, "x36": x36,
            "h": torch.stack([h1, h3, h36[:, 1]], 1), "d3": d3, "d6": d6}


class _SuperKernels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, t, s, q, free, fixed, layout):  # type: ignore[override]
        v = _decide(w, t, s, q, free, fixed, layout)
        factor = torch.stack([v["d3"], v["d3"] * v["d6"]], 1).view(-1)[layout.row_segment]  # (M,)
        d1_rows = v["d1"][layout.row_layer]
        m = torch.addcmul(v["c"], v["r"], d1_rows[:, None])
        effective = m * factor[:, None]
        ctx.layout = layout
        ctx.save_for_backward(v["r"], v["c"], m, factor, d1_rows, v["ring_sq"], v["n1"], v["x1"], v["d1"],
                              v["halves"], v["x36"], v["d3"], v["d6"], s, q, free)
        return effective, torch.stack([v["d1"], v["d3"], v["d6"]], 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_eff, grad_ind):  # type: ignore[override]
        layout = ctx.layout
        r, c, m, factor, d1_rows, ring_sq, n1, x1, d1, halves, x36, d3, d6, s, q, free = ctx.saved_tensors
        L = len(layout.channels)
        if grad_eff is None:
            grad_eff = torch.zeros_like(m)
        if grad_ind is None:
            grad_ind = torch.zeros(L, 3, dtype=m.dtype, device=m.device)
        g1, g3, g6 = grad_ind.unbind(1)
        # effective = m * factor (factor: d_e3 on the first half of a layer's rows, d_e3 d_e6 on the second)
        dm = grad_eff * factor[:, None]
        d_factor = torch.zeros(2 * L, dtype=m.dtype, device=m.device).index_add_(
            0, layout.row_segment, (grad_eff * m).sum(1)).view(L, 2)
        dd3 = g3 + d_factor[:, 0] + d_factor[:, 1] * d6
        dd6 = g6 + d_factor[:, 1] * d3
        # the e3/e6 indicators: straight through the hard step with sigmoid's slope; none where the
        # decision is frozen, nor for the e3 of a layer that cannot be skipped
        free_f = free.to(m.dtype)
        searched3 = free_f * layout.skippable.to(m.dtype)
        dx36 = torch.stack([dd3 * q[:, 1] * searched3, dd6 * q[:, 2] * free_f], 1) * _sigmoid_slope(x36)
        dn36 = dx36 / s[:, 1:]
        # n_half = sqrt(||c_half||² + d_k5² ||r_half||²); zero norms pass no gradient (as torch's norm)
        per_norm36 = torch.where(halves > 0, dn36 / halves, torch.zeros_like(halves))  # (L, 2)
        # d_k5: directly in m, and inside both half norms
        dd1 = g1 + torch.zeros(L, dtype=m.dtype, device=m.device).index_add_(0, layout.row_layer, (dm * r).sum(1)) \
            + (per_norm36 * ring_sq).sum(1) * d1
        dx1 = dd1 * q[:, 0] * free_f * _sigmoid_slope(x1)
        dn1 = dx1 / s[:, 0]
        per_norm1 = torch.where(n1 > 0, dn1 / n1, torch.zeros_like(n1))
        # back to the weight rows: m = c + d_k5 r; n_k5 = ||r||; the half norms as above
        a = per_norm36.reshape(-1)[layout.row_segment]  # (M,)
        b = per_norm1[layout.row_layer]
        d_core = torch.addcmul(dm, c, a[:, None])
        d_ring = d1_rows[:, None] * dm + (d1_rows * d1_rows * a + b)[:, None] * r
        dw = d_core + layout.ring * (d_ring - d_core)  # core taps take d_core, ring taps d_ring
        dt = -torch.stack([dn1, dn36[:, 0], dn36[:, 1]], 1)
        return dw, dt, None, None, None, None, None


class SuperKernelBank:
    """The superkernels of a supernet's searchable blocks, computed together (see the module docstring).

    Holds no state of its own: the thresholds, scales, dropout and frozen decisions stay in each block's
    :class:`~spnas.nn.superkernel.SuperKernel` (so checkpoints and state dicts are unchanged); the bank
    stacks them on every call, and caches the constant tensors it derives from them per device.
    """

    def __init__(self, blocks: list) -> None:
        self.blocks = blocks
        self._layouts: dict[torch.device, _Layout] = {}
        self._frozen_cache: dict = {}

    def _layout(self, device: torch.device) -> _Layout:
        if device not in self._layouts:
            self._layouts[device] = _Layout.build([b.conv_dw.weight.shape[0] for b in self.blocks],
                                                  [b.superkernel.skippable for b in self.blocks], device)
        return self._layouts[device]

    def _inputs(self, dropout: bool):
        """(rows of all depthwise weights, thresholds, scales, dropout factors, free mask, fixed decisions)."""
        weights = [b.conv_dw.weight for b in self.blocks]
        device, dtype = weights[0].device, weights[0].dtype
        layout = self._layout(device)
        sks = [b.superkernel for b in self.blocks]
        w = torch.cat([x.reshape(-1, TAPS) for x in weights])
        t = torch.stack([p for sk in sks for p in (sk.t_k5, sk.t_e3, sk.t_e6)]).view(-1, 3)
        s = torch.stack([sk.indicator_scale for sk in sks])
        free, fixed = self._frozen(sks, device, dtype)
        keep = sks[0].indicator_keep if dropout else None
        if keep is not None and keep < 1.0 and any(sk.indicator_keep != keep for sk in sks):
            raise ValueError("the bank applies one indicator-dropout keep probability to every layer")
        if keep is not None and keep < 1.0:
            q = indicator_dropout(torch.ones(len(sks), 3, dtype=dtype, device=device), keep)
            # no dropout on a frozen decision, nor on the e3 of a layer that cannot be skipped
            q = torch.where(free[:, None] & torch.stack([free, layout.skippable, free], 1), q, torch.ones_like(q))
        else:
            q = torch.ones(len(sks), 3, dtype=dtype, device=device)
        return w, t, s, q, free, fixed, layout

    def _frozen(self, sks, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(L,) True where the layer's decisions are searched, and (L, 3) the frozen ones' decisions."""
        key = (device, dtype, tuple(sk.frozen for sk in sks))
        if key not in self._frozen_cache:
            self._frozen_cache = {key: (
                torch.tensor([sk.frozen is None for sk in sks], device=device),
                torch.tensor([[0.0] * 3 if sk.frozen is None else [sk.frozen.k5, sk.frozen.e3, sk.frozen.e6]
                              for sk in sks], dtype=dtype, device=device))}
        return self._frozen_cache[key]

    def __call__(self, training: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(each block's effective depthwise weight, (L, 3) indicators [d_k5, d_e3, d_e6]), differentiable;
        indicator dropout where ``training`` and the blocks ask for it."""
        w, t, s, q, free, fixed, layout = self._inputs(dropout=training)
        with torch.autocast(w.device.type, enabled=False):  # masks, norms and thresholds stay float32
            effective, indicators = _SuperKernels.apply(w, t, s, q, free, fixed, layout)
        rows = effective.split(layout.channels)
        return [x.view(b.conv_dw.weight.shape) for x, b in zip(rows, self.blocks)], indicators

    @torch.no_grad()
    def decisions(self) -> dict[str, torch.Tensor]:
        """The hard decisions now, without dropout, on the device: ``decisions`` (L, 3) 0/1 [k5, e3, e6],
        ``margins`` (L, 3) (norm - threshold) / scale of each group (their signs are the decisions, except
        where frozen or where e3 cannot be skipped), and ``norms`` (L, 3) the group norms compared."""
        w, t, s, _, free, fixed, layout = self._inputs(dropout=False)
        v = _decide(w, t, s, torch.ones_like(t), free, fixed, layout)
        return {"decisions": v["h"], "margins": torch.stack([v["x1"], v["x36"][:, 0], v["x36"][:, 1]], 1),
                "norms": torch.stack([v["n1"], v["halves"][:, 0], v["halves"][:, 1]], 1)}
