"""The search progress figure: predicted latency over steps, and each layer's op over time; the op
colours every figure of an architecture uses (the run report's too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spnas.outputs.plotting import pyplot, save_figure
from spnas.jobs.runs import read_metrics
from spnas.model.space import MBCONV_OPS, SKIP, SearchSpace

#: ops in plotting order (small to large) and their colours, the same in every figure
OP_ORDER = (SKIP,) + MBCONV_OPS
OP_COLORS = ("#ffffff", "#c6dbef", "#6baed6", "#fdae6b", "#e6550d")


def plot_search_progress(metrics_path: Path, out: Path, space: SearchSpace, target_ms: float | None,
                         warmup_steps: int) -> None:
    plt = pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows = [r for r in read_metrics(metrics_path) if "ops" in r]
    if not rows:
        return
    steps = np.array([r["step"] for r in rows])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), dpi=110, sharex=True,
                                   gridspec_kw={"height_ratios": [1, 1.3]})
    ax1.plot(steps, [r["predicted_ms"] for r in rows], color="tab:blue", label="predicted latency (hard decisions)")
    if target_ms:
        ax1.axhline(target_ms, color="tab:red", ls="--", label=f"target {target_ms:g} ms")
    ax1.axvspan(0, warmup_steps, color="k", alpha=0.06, label="warm-up (λ = 0, indicator dropout)")
    ax1.set_ylabel("ms")
    lam = ax1.twinx()
    lam.plot(steps, [r["lambda"] for r in rows], color="tab:gray", lw=0.8, alpha=0.7)
    lam.set_ylabel("λ", color="tab:gray")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title("Single-Path NAS search progress")

    codes = np.array([[OP_ORDER.index(op) for op in r["ops"]] for r in rows]).T
    ax2.imshow(codes, aspect="auto", interpolation="nearest", cmap=ListedColormap(OP_COLORS),
               vmin=-0.5, vmax=len(OP_ORDER) - 0.5, extent=(steps[0], steps[-1], len(codes) - 0.5, -0.5))
    ax2.set_ylabel("layer")
    ax2.set_xlabel("step")
    for b in np.cumsum(space.stage_lengths())[:-1]:
        ax2.axhline(b - 0.5, color="k", lw=0.5)
    ax2.legend(handles=[Patch(facecolor=c, edgecolor="k", label=o) for o, c in zip(OP_ORDER, OP_COLORS)],
               loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=5, fontsize=8)
    fig.tight_layout()
    save_figure(fig, out)
