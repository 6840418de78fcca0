"""Cell-space scores of zero-shot elmo: cosine of the cell embeddings to the class text vectors.

As LangCell compares its cell and text embeddings: the ``elmo_embed`` cell embeddings (centred
first with ``centre``: the component common to all cells otherwise dominates every cosine) are
compared with each class's text vector in the gene table's space.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cell_scores"]


def cell_scores(
    cells: np.ndarray, vectors: np.ndarray, *, centre: bool = True, where: str = "cells"
) -> np.ndarray:
    """Cosine ``(n_cells, n_classes)`` of each cell embedding to each unit class vector.

    Parameters
    ----------
    cells
        ``(n_cells, dim)`` cell embeddings (``obsm['X_elmo']``).
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
    cells = np.asarray(cells, dtype=np.float64)
    if cells.shape[1] != vectors.shape[1]:
        raise ValueError(f"{where} is {cells.shape[1]}-d but the class vectors are {vectors.shape[1]}-d.")
    # a new array either way: the embeddings in obsm are not normalised in place
    cells = cells - cells.mean(axis=0) if centre else cells.copy()
    cells /= np.maximum(np.linalg.norm(cells, axis=1, keepdims=True), 1e-12)
    return cells @ vectors.T
