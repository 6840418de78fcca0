"""Shared plumbing of the plots: axes creation and saving."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def new_axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """``(figure, axes)``: the given axes, or a new figure of ``figsize``."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=figsize)
    return fig, ax


def write_in_cells(ax: Any, values: np.ndarray, fmt: str, *, dark: np.ndarray, fontsize: float) -> None:
    """Write each finite value of a heatmap in its cell with ``fmt``: white where ``dark``, else black."""
    for i, j in zip(*np.nonzero(np.isfinite(values)), strict=True):
        ax.text(
            j,
            i,
            fmt.format(values[i, j]),
            ha="center",
            va="center",
            fontsize=fontsize,
            color="white" if dark[i, j] else "black",
        )


def finish(fig: Any, save: str | os.PathLike | None, *, dpi: int = 150) -> None:
    """Lay out the figure and save it when ``save`` is a path (the folder is created)."""
    if save is None:
        return
    from pathlib import Path

    path = Path(save)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
