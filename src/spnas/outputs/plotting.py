"""Matplotlib without a display and figures written atomically: what every plot in spnas shares."""

from __future__ import annotations

from pathlib import Path

from spnas.outputs.files import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` as a PNG via a temp file and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    pyplot().close(fig)
