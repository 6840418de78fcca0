"""Cell-space scores of zero-shot elmo: cosine of the cell embeddings to the class text vectors.

As LangCell compares its cell and text embeddings: the ``elmo_embed`` cell embeddings (centred
first with ``centre``: the component common to all cells otherwise dominates every cosine) are
compared with each class's text vector in the gene table's space.

On a dask array of embeddings (``tl.elmo_embed`` on a dask matrix) the mean is a sum over the
row chunks and each chunk's cosines are a task: only the ``(n_cells, n_classes)`` cosines come
back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scelmo._dask_blocks import map_row_chunks, shared
from scelmo._matrix import is_dask

__all__ = ["cell_scores"]


def _sum_block(block: Any) -> np.ndarray:
    return np.asarray(block, dtype=np.float64).sum(axis=0)


def _cosine_block(block: Any, vectors: np.ndarray, mean: np.ndarray | None) -> np.ndarray:
    """The cosines of one block of cells: what :func:`cell_scores` does to every row."""
    cells = np.asarray(block, dtype=np.float64)
    cells = cells - mean if mean is not None else cells.copy()
    cells /= np.maximum(np.linalg.norm(cells, axis=1, keepdims=True), 1e-12)
    return cells @ vectors.T


def _lazy_cell_scores(cells: Any, vectors: np.ndarray, centre: bool) -> np.ndarray:
    mean = None
    if centre:
        sums = map_row_chunks(_sum_block, cells)
        mean = np.sum(sums, axis=0) / max(cells.shape[0], 1)
    parts = map_row_chunks(_cosine_block, cells, shared(vectors), mean)
    return np.concatenate(parts) if parts else np.empty((0, vectors.shape[0]))


def cell_scores(
    cells: np.ndarray, vectors: np.ndarray, *, centre: bool = True, where: str = "cells"
) -> np.ndarray:
    """Cosine ``(n_cells, n_classes)`` of each cell embedding to each unit class vector.

    Parameters
    ----------
    cells
        ``(n_cells, dim)`` cell embeddings (``obsm['X_elmo']``): an array, or a dask array
        (scored one row chunk per task).
    vectors
        ``(n_classes, dim)`` unit class vectors in the same space.
    centre
        Subtract the mean cell embedding first.
    where
        The embeddings' name in messages (``"obsm['X_elmo']"``).

    Returns
    -------
    The cosines.

    Raises
    ------
    ValueError
        When the cells and the class vectors have different dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_cells import cell_scores
    >>> cell_scores(np.array([[2.0, 0.0], [0.0, 1.0]]), np.eye(2), centre=False).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    lazy = is_dask(cells)
    if not lazy:
        cells = np.asarray(cells, dtype=np.float64)
    if cells.shape[1] != vectors.shape[1]:
        raise ValueError(f"{where} is {cells.shape[1]}-d but the class vectors are {vectors.shape[1]}-d.")
    if lazy:
        return _lazy_cell_scores(cells, vectors, centre)
    # a new array either way: the embeddings in obsm are not normalised in place
    cells = cells - cells.mean(axis=0) if centre else cells.copy()
    cells /= np.maximum(np.linalg.norm(cells, axis=1, keepdims=True), 1e-12)
    return cells @ vectors.T
