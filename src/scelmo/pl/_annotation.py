"""Plots of an annotation: confusion matrix, per-class F1, cells x classes similarities."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo.annotation._output import UNKNOWN
from scelmo.evaluation import annotation_metrics

from ._utils import finish, new_axes, write_in_cells

__all__ = ["class_f1", "confusion_matrix", "similarity_heatmap"]


def _columns(adata: AnnData, *keys: str) -> list[pd.Series]:
    for key in keys:
        if key not in adata.obs:
            raise KeyError(f"adata.obs[{key!r}] not found; available: {list(adata.obs.columns)}.")
    return [adata.obs[key] for key in keys]


def confusion_table(
    adata: AnnData,
    true_key: str,
    pred_key: str,
    *,
    normalize: Literal["true", "pred"] | None = "true",
) -> pd.DataFrame:
    """The confusion matrix drawn by :func:`confusion_matrix`: true classes x predicted labels.

    Rows are the true classes (sorted); columns the same classes, then any other predicted
    label (ontology ancestors, then ``"unknown"``). ``normalize="true"`` divides rows by their
    sum (recall on the diagonal), ``"pred"`` divides columns (precision on the diagonal).

    Examples
    --------
    >>> import pandas as pd
    >>> from anndata import AnnData
    >>> from scelmo.pl import confusion_table
    >>> adata = AnnData(obs=pd.DataFrame({"t": ["a", "a", "b"], "p": ["a", "b", "b"]}, index=["1", "2", "3"]))
    >>> confusion_table(adata, "t", "p").to_numpy().tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    """
    truth, predicted = _columns(adata, true_key, pred_key)
    keep = truth.notna().to_numpy()
    truth = truth[keep].astype(str)
    predicted = predicted[keep].astype(object).fillna(UNKNOWN).astype(str)
    rows = sorted(truth.unique())
    extra = sorted(set(predicted) - set(rows) - {UNKNOWN})
    columns = rows + extra + ([UNKNOWN] if UNKNOWN in set(predicted) else [])
    table = pd.crosstab(truth, predicted).reindex(index=rows, columns=columns, fill_value=0).astype(float)
    if normalize == "true":
        table = table.div(table.sum(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    elif normalize == "pred":
        table = table.div(table.sum(axis=0).replace(0, np.nan), axis=1).fillna(0.0)
    elif normalize is not None:
        raise ValueError(f"`normalize` must be 'true', 'pred' or None, got {normalize!r}.")
    table.index.name, table.columns.name = "true", "predicted"
    return table


def confusion_matrix(
    adata: AnnData,
    true_key: str,
    pred_key: str,
    *,
    normalize: Literal["true", "pred"] | None = "true",
    annotate: bool = True,
    cmap: str = "Blues",
    ax: Any = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Heatmap of true classes (rows) against predicted labels (columns).

    Parameters
    ----------
    adata
        Data with both columns in ``obs``.
    true_key
        Column of true labels.
    pred_key
        Column of predictions (e.g. ``"zeroshot"`` or ``"knn"``).
    normalize
        ``"true"`` (rows sum to 1: recall on the diagonal), ``"pred"`` (columns sum to 1) or
        ``None`` (counts).
    annotate
        Write the values in the cells.
    cmap
        Colour map.
    ax
        Axes to draw into (default: a new figure).
    save
        Save the figure to this path (format from the suffix).

    Returns
    -------
    The matplotlib ``Axes``; the numbers drawn are :func:`confusion_table`.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca")
    >>> ax = se.pl.confusion_matrix(adata, "bulk_labels", "knn")
    """
    table = confusion_table(adata, true_key, pred_key, normalize=normalize)
    n_rows, n_cols = table.shape
    fig, ax = new_axes(ax, (1.2 + 0.55 * n_cols, 1.0 + 0.5 * n_rows))
    vmax = 1.0 if normalize else max(float(table.to_numpy().max()), 1.0)
    image = ax.imshow(table.to_numpy(), cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_cols), table.columns, rotation=60, ha="right")
    ax.set_yticks(range(n_rows), table.index)
    ax.set_xlabel(f"predicted ({pred_key})")
    ax.set_ylabel(f"true ({true_key})")
    if annotate:
        values = table.to_numpy()
        # Counts are whole numbers: written without decimals.
        write_in_cells(ax, values, "{:.2f}" if normalize else "{:.0f}", dark=values > 0.6 * vmax, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction" if normalize else "cells")
    finish(fig, save)
    return ax


def class_f1(
    adata: AnnData,
    true_key: str,
    pred_key: str,
    *,
    color: str = "tab:blue",
    ax: Any = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Per-class F1 of an annotation as horizontal bars, with each class's support.

    The bars are :func:`scelmo.tl.annotation_metrics`' ``per_class["f1"]``; the title gives
    accuracy and macro-F1.

    Parameters
    ----------
    adata
        Data with both columns in ``obs``.
    true_key
        Column of true labels.
    pred_key
        Column of predictions.
    color
        Bar colour.
    ax
        Axes to draw into (default: a new figure).
    save
        Save the figure to this path.

    Returns
    -------
    The matplotlib ``Axes``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca")
    >>> ax = se.pl.class_f1(adata, "bulk_labels", "knn")
    """
    report = annotation_metrics(adata, true_key, pred_key)
    per_class = report.per_class.sort_values("f1")
    fig, ax = new_axes(ax, (5.5, 0.8 + 0.35 * len(per_class)))
    positions = np.arange(len(per_class))
    ax.barh(positions, per_class["f1"].to_numpy(), color=color)
    ax.set_yticks(positions, per_class.index)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("F1")
    for y, (f1, support) in enumerate(zip(per_class["f1"], per_class["support"], strict=True)):
        ax.text(min(f1 + 0.01, 1.0), y, f"{f1:.2f} (n={support})", va="center", fontsize=7)
    ax.set_title(f"{pred_key}: accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}", fontsize=9)
    finish(fig, save)
    return ax


def similarity_heatmap(
    adata: AnnData,
    key: str = "zeroshot",
    *,
    groupby: str | None = None,
    max_cells: int | None = 2000,
    cmap: str = "viridis",
    random_state: int = 0,
    ax: Any = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Cells x classes heatmap of an annotation's class probabilities (``obsm[key + '_probs']``).

    Cells are sorted by ``groupby`` (for example the true labels, default: the predicted label)
    and, within a group, by their best class; lines separate the groups.

    Parameters
    ----------
    adata
        Data annotated by :func:`scelmo.tl.zeroshot_annotate` or :func:`scelmo.tl.knn_annotate`.
    key
        Their ``key_added``.
    groupby
        ``obs`` column to group cells by.
    max_cells
        Draw at most this many cells (a random subset, the same for a given ``random_state``).
    cmap
        Colour map.
    random_state
        Seed of the subset.
    ax
        Axes to draw into (default: a new figure).
    save
        Save the figure to this path.

    Returns
    -------
    The matplotlib ``Axes``; the image holds exactly the probabilities of the cells drawn.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca")
    >>> ax = se.pl.similarity_heatmap(adata, "knn", groupby="bulk_labels")
    """
    probs_key = f"{key}_probs"
    if probs_key not in adata.obsm or key not in adata.uns:
        raise KeyError(
            f"adata.obsm[{probs_key!r}] / adata.uns[{key!r}] not found: annotate first "
            "(scelmo.tl.zeroshot_annotate or knn_annotate with key_added=key)."
        )
    classes = list(adata.uns[key]["classes"])
    probs = np.asarray(adata.obsm[probs_key])
    groups = adata.obs[groupby if groupby is not None else key].astype(str).to_numpy()
    cells = np.arange(adata.n_obs)
    if max_cells is not None and adata.n_obs > max_cells:
        cells = np.sort(np.random.default_rng(random_state).choice(adata.n_obs, max_cells, replace=False))
    order = np.lexsort((probs[cells].argmax(axis=1), groups[cells]))
    cells = cells[order]
    fig, ax = new_axes(ax, (1.5 + 0.45 * len(classes), 5.0))
    image = ax.imshow(probs[cells], aspect="auto", cmap=cmap, interpolation="nearest", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    sorted_groups = groups[cells]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    ends = np.r_[starts[1:], len(cells)]
    ax.set_yticks((starts + ends - 1) / 2, sorted_groups[starts], fontsize=7)
    for start in starts[1:]:
        ax.axhline(start - 0.5, color="white", linewidth=0.8)
    ax.set_ylabel(groupby or f"predicted ({key})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="probability")
    finish(fig, save)
    return ax
