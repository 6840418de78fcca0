"""Standardised expression (per-gene z-scores) of a cells x genes matrix, without densifying it.

:class:`Standardised` reads an in-memory or backed matrix in row blocks; on a dask matrix,
:func:`standardise` gives a :class:`DaskStandardised`, whose passes over the matrix are dask
graphs of one task per row chunk: each task runs the same block function as the in-memory
loop and returns only sums over its cells or per-cell values, so the matrix is never gathered
in one process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scelmo._dask_blocks import map_row_chunks, shared
from scelmo._matrix import is_dask, iter_row_blocks, to_float32_block

__all__ = ["DaskStandardised", "Standardised", "standardise"]

_CHUNK = 8192


def _moments(block: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene sum and sum of squares of a block's cells (float64)."""
    if sp.issparse(block):
        total = np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
        return total, np.asarray(block.multiply(block).sum(axis=0, dtype=np.float64)).ravel()
    block = block.astype(np.float64)
    return block.sum(axis=0), (block * block).sum(axis=0)


def _correlation_sums(block: Any, centred: np.ndarray) -> np.ndarray:
    """``block.T @ centred`` (genes x columns) as a dense array."""
    part = block.T @ centred
    return part.toarray() if sp.issparse(part) else np.asarray(part)


def _group_sums(block: Any, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group sums of a block's cells (``n_groups x genes``); cells of group ``-1`` are left out."""
    keep = np.flatnonzero(groups >= 0)
    if keep.size == 0:
        return np.zeros((n_groups, block.shape[1]))
    indicator = sp.csr_matrix((np.ones(keep.size), (groups[keep], keep)), shape=(n_groups, block.shape[0]))
    part = indicator @ block
    return part.toarray() if sp.issparse(part) else np.asarray(part)


class Standardised:
    """Per-gene standardised expression ``(x - mean) / sd`` applied lazily to a (sparse) matrix.

    The matrix is read in row blocks and never densified or copied: ``Z @ weights``,
    correlations of genes with cell scores and group means are computed from the matrix and the
    per-gene mean and standard deviation.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._standardised import Standardised
    >>> z = Standardised(np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> z.varies.tolist(), z.times(np.array([[1.0], [0.0]])).ravel().tolist()
    ([True, False], [-1.0, 1.0])
    """

    def __init__(self, matrix: Any) -> None:
        self.matrix = matrix
        n_genes = matrix.shape[1]
        total = np.zeros(n_genes)
        squares = np.zeros(n_genes)
        for _, _, block in iter_row_blocks(matrix, _CHUNK):
            block_total, block_squares = _moments(block)
            total += block_total
            squares += block_squares
        self._set_moments(matrix.shape[0], total, squares)

    def _set_moments(self, n_cells: int, total: np.ndarray, squares: np.ndarray) -> None:
        if not (np.isfinite(total).all() and np.isfinite(squares).all()):
            raise ValueError("The expression matrix contains NaN or infinite values; fix or drop them first.")
        self.n_cells = n_cells
        self.mean = total / max(n_cells, 1)
        var = np.maximum(squares / max(n_cells, 1) - self.mean**2, 0.0)
        sd = np.sqrt(var)
        #: Genes that are not constant over the cells (the only ones that can mark a class).
        self.varies = sd > 1e-8
        self.sd = np.where(self.varies, sd, 1.0)

    def _scaled(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scaled = weights / self.sd[:, None]
        return scaled, self.mean @ scaled

    def times(self, weights: np.ndarray) -> np.ndarray:
        """``Z @ weights`` (cells x columns) without forming ``Z``.

        Signatures weigh a few genes: only the genes with a weight are read (a column subset
        of a sparse block costs one pass over its non-zeros; the product then costs that of
        the subset, not of the whole transcriptome times every column).
        """
        scaled, offset = self._scaled(weights)
        used = np.flatnonzero(np.any(scaled != 0, axis=1))
        subset = sp.issparse(self.matrix) and used.size < scaled.shape[0] // 4
        out = np.empty((self.n_cells, weights.shape[1]))
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            product = block[:, used] @ scaled[used] if subset else block @ scaled
            out[start:stop] = np.asarray(product) - offset
        return out

    def _standardise_columns(self, part: Any, genes: np.ndarray) -> np.ndarray:
        part = part.toarray() if sp.issparse(part) else np.asarray(part)
        return (part.astype(np.float64) - self.mean[genes]) / self.sd[genes]

    def columns(self, genes: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Dense standardised expression of some genes (cells x genes), optionally of some cells."""
        part = self.matrix[:, genes] if rows is None else self.matrix[rows][:, genes]
        return self._standardise_columns(part, genes)

    def _correlations(self, sums: np.ndarray, centred: np.ndarray) -> np.ndarray:
        # sum_c (x - mean) * s_c = sum_c x * s_c (s is centred); divide by n sd_x sd_s
        sd_scores = centred.std(axis=0)
        out = sums / (self.n_cells * self.sd[:, None] * np.where(sd_scores > 1e-12, sd_scores, 1.0))
        out[~self.varies] = 0.0
        return out

    def gene_correlations(self, scores: np.ndarray) -> np.ndarray:
        """Pearson correlation of every gene with each column of ``scores`` (genes x columns)."""
        centred = scores - scores.mean(axis=0)
        sums = np.zeros((self.mean.size, scores.shape[1]))
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            sums += _correlation_sums(block, centred[start:stop])
        return self._correlations(sums, centred)

    def _group_means(self, sums: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
        counts = np.bincount(groups[groups >= 0], minlength=n_groups).astype(np.float64)
        means = sums / np.maximum(counts, 1)[:, None]
        return (means - self.mean) / self.sd

    def group_means(self, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """Mean standardised expression per group (``n_groups x genes``); ``-1`` = no group."""
        sums = np.zeros((n_groups, self.mean.size))
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            sums += _group_sums(block, groups[start:stop], n_groups)
        return self._group_means(sums, groups, n_groups)


def _moments_block(block: Any) -> tuple[np.ndarray, np.ndarray]:
    return _moments(to_float32_block(block))


def _times_block(block: Any, scaled: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.asarray(to_float32_block(block) @ scaled) - offset


def _correlation_block(block: Any, centred: np.ndarray) -> np.ndarray:
    return _correlation_sums(to_float32_block(block), centred)


def _group_block(block: Any, groups: np.ndarray, n_groups: int) -> np.ndarray:
    return _group_sums(to_float32_block(block), groups, n_groups)


def _columns_block(block: Any, position: np.ndarray, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The chosen cells of a block (``position >= 0``) at the chosen genes, and their output rows."""
    local = np.flatnonzero(position >= 0)
    part = block[local][:, genes]
    return (part.toarray() if sp.issparse(part) else np.asarray(part)), position[local]


class DaskStandardised(Standardised):
    """:class:`Standardised` over a dask matrix: every pass is a dask graph of row-chunk tasks.

    The per-gene moments, ``Z @ weights``, gene correlations and group means are sums over
    the row chunks (or per-cell results) of the same block functions as the in-memory class;
    the weights enter each graph once. The cells x columns results (scores) are small and
    come back as numpy arrays.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from scelmo.annotation._standardised import DaskStandardised
    >>> z = DaskStandardised(da.from_array(np.array([[0.0, 1.0], [2.0, 1.0]]), chunks=(1, 2)))
    >>> z.varies.tolist(), z.times(np.array([[1.0], [0.0]])).ravel().tolist()
    ([True, False], [-1.0, 1.0])
    """

    def __init__(self, matrix: Any) -> None:
        self.matrix = matrix.rechunk({1: -1}) if matrix.numblocks[1] > 1 else matrix
        moments = map_row_chunks(_moments_block, self.matrix)
        n_genes = matrix.shape[1]
        total, squares = np.zeros(n_genes), np.zeros(n_genes)
        for block_total, block_squares in moments:
            total += block_total
            squares += block_squares
        self._set_moments(matrix.shape[0], total, squares)

    def times(self, weights: np.ndarray) -> np.ndarray:
        """``Z @ weights`` (cells x columns), one task per row chunk."""
        scaled, offset = self._scaled(weights)
        parts = map_row_chunks(_times_block, self.matrix, shared(scaled), offset)
        return np.concatenate(parts) if parts else np.empty((0, weights.shape[1]))

    def columns(self, genes: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Dense standardised expression of some genes (cells x genes), optionally of some cells.

        Only those genes of those cells come back from the tasks.
        """
        genes = np.asarray(genes)
        position = np.arange(self.n_cells)
        if rows is not None:
            position = np.full(self.n_cells, -1, dtype=np.int64)
            position[np.asarray(rows)] = np.arange(len(rows))
        parts = map_row_chunks(_columns_block, self.matrix, shared(genes), rows=[position])
        out = np.empty((int((position >= 0).sum()), genes.size))
        for values, where in parts:
            out[where] = values
        return self._standardise_columns(out, genes)

    def gene_correlations(self, scores: np.ndarray) -> np.ndarray:
        """Pearson correlation of every gene with each column of ``scores``: a sum over row chunks."""
        centred = scores - scores.mean(axis=0)
        parts = map_row_chunks(_correlation_block, self.matrix, rows=[centred])
        sums = np.zeros((self.mean.size, scores.shape[1]))
        for part in parts:
            sums += part
        return self._correlations(sums, centred)

    def group_means(self, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """Mean standardised expression per group (``n_groups x genes``): a sum over row chunks."""
        parts = map_row_chunks(_group_block, self.matrix, n_groups, rows=[groups])
        sums = np.zeros((n_groups, self.mean.size))
        for part in parts:
            sums += part
        return self._group_means(sums, groups, n_groups)


def standardise(matrix: Any) -> Standardised:
    """The :class:`Standardised` expression of ``matrix``: a :class:`DaskStandardised` for a dask array.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._standardised import standardise
    >>> standardise(np.array([[0.0, 1.0], [2.0, 1.0]])).mean.tolist()
    [1.0, 1.0]
    """
    return DaskStandardised(matrix) if is_dask(matrix) else Standardised(matrix)
