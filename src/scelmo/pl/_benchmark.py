"""The benchmark table of ``tl.benchmark`` as an annotated heatmap."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._utils import finish, new_axes, write_in_cells

__all__ = ["benchmark_table"]


def _tidy(data: AnnData | pd.DataFrame, key: str) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if key not in data.uns:
        raise KeyError(
            f"adata.uns[{key!r}] not found: run scelmo.tl.benchmark(adata, ..., key_added={key!r}) first."
        )
    record = data.uns[key]
    return record["results"] if isinstance(record, dict) else record


def benchmark_table(
    data: AnnData | pd.DataFrame,
    *,
    key: str = "benchmark",
    metric_types: Sequence[str] | None = None,
    cmap: str = "YlGnBu",
    ax: Any = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Embeddings (rows) x metrics (columns), each cell coloured within its metric and labelled.

    Parameters
    ----------
    data
        An AnnData with ``uns[key]`` from :func:`scelmo.tl.benchmark`, or its tidy table.
    key
        Where the table is in ``uns``.
    metric_types
        Keep only these ``metric_type`` values (default: all but ``"info"``).
    cmap
        Colour map (colours are scaled per metric, so columns can be compared by eye).
    ax
        Axes to draw into (default: a new figure).
    save
        Save the figure to this path.

    Returns
    -------
    The matplotlib ``Axes``; the numbers written are the table's values.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> _ = se.tl.benchmark(adata, ["X_pca", "X_umap"], "bulk_labels", resolutions=[1.0], knn_k=None)
    >>> ax = se.pl.benchmark_table(adata)
    """
    table = _tidy(data, key)
    if metric_types is None:
        table = table[table["metric_type"] != "info"]
    else:
        table = table[table["metric_type"].isin(list(metric_types))]
    if table.empty:
        raise ValueError("No metric left to draw; check `metric_types`.")
    wide = table.pivot_table(index="embedding", columns="metric", values="value", aggfunc="first", sort=False)
    values = wide.to_numpy(dtype=float)
    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    span = np.where(high > low, high - low, 1.0)
    colours = (values - low) / span
    fig, ax = new_axes(ax, (1.5 + 1.1 * wide.shape[1], 0.9 + 0.5 * wide.shape[0]))
    ax.imshow(colours, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(wide.shape[1]), wide.columns, rotation=45, ha="right")
    ax.set_yticks(range(wide.shape[0]), wide.index)
    write_in_cells(ax, values, "{:.3f}", dark=colours > 0.6, fontsize=8)
    ax.set_title("benchmark (colour scaled per metric)", fontsize=9)
    finish(fig, save)
    return ax
