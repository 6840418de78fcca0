"""The genes or reference cells behind a group of cells' labels (:func:`scelmo.tl.explain_annotation`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from ._utils import finish, new_axes

__all__ = ["explanation"]


def explanation(
    frame: pd.DataFrame,
    *,
    n_top: int = 10,
    ax: Any = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """A dot plot of the features that drove a group of cells' labels, per class.

    For each class, its ``n_top`` features with the largest mean contribution over the cells
    of the frame; a dot's colour is the mean contribution (over all cells explained for that
    class, 0 where a cell does not list the feature) and its size the fraction of those cells
    that list it.

    Parameters
    ----------
    frame
        The output of :func:`scelmo.tl.explain_annotation`.
    n_top
        Features per class.
    ax
        Axes to draw on (default: a new figure).
    save
        Write the figure to this path.

    Returns
    -------
    The matplotlib axes.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> reference, query = adata[:500].copy(), adata[500:].copy()
    >>> se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca")
    >>> frame = se.tl.explain_annotation(query, "knn", cells={"bulk_labels": "CD19+ B"}, reference=reference)
    >>> ax = se.pl.explanation(frame, n_top=5)
    """
    missing = {"cell", "class", "feature", "contribution"} - set(frame.columns)
    if missing:
        raise KeyError(
            f"The frame lacks the columns {sorted(missing)}: pass scelmo.tl.explain_annotation's output."
        )
    if frame.empty:
        raise ValueError("The explanation frame is empty: no cell was explained.")
    if n_top < 1:
        raise ValueError(f"`n_top` must be at least 1, got {n_top}.")
    n_cells = frame.groupby("class", observed=True)["cell"].nunique()
    summary = frame.groupby(["class", "feature"], observed=True).agg(
        total=("contribution", "sum"), listed=("cell", "nunique")
    )
    summary = summary.reset_index()
    summary["mean"] = summary["total"] / summary["class"].map(n_cells).to_numpy()
    summary["fraction"] = summary["listed"] / summary["class"].map(n_cells).to_numpy()
    top = summary.sort_values("mean", ascending=False).groupby("class", sort=False).head(n_top)
    classes = list(pd.unique(frame["class"]))
    features = list(dict.fromkeys(top.sort_values(["class", "mean"], ascending=[True, False])["feature"]))
    fig, ax = new_axes(ax, (1.2 + 0.9 * len(classes), 1.0 + 0.28 * len(features)))
    x = top["class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    y = top["feature"].map({f: i for i, f in enumerate(features)}).to_numpy()
    limit = float(np.abs(top["mean"]).max()) or 1.0
    dots = ax.scatter(
        x,
        y,
        s=20 + 180 * top["fraction"].to_numpy(),
        c=top["mean"].to_numpy(),
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        edgecolors="grey",
        linewidths=0.5,
    )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(features)), features)
    ax.set_xlim(-0.5, len(classes) - 0.5)
    ax.set_ylim(len(features) - 0.5, -0.5)
    kind = str(frame["kind"].iloc[0]) if "kind" in frame else "feature"
    ax.set_ylabel("reference cell" if kind == "reference_cell" else kind)
    ax.set_xlabel("class")
    fig.colorbar(dots, ax=ax, label="mean contribution", shrink=0.6)
    finish(fig, save)
    return ax
