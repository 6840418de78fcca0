"""Standardised expression (per-gene z-scores) of a cells x genes matrix, without densifying it."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from scelmo._matrix import iter_row_blocks

__all__ = ["Standardised"]

_CHUNK = 8192


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
        n_cells, n_genes = matrix.shape
        total = np.zeros(n_genes)
        squares = np.zeros(n_genes)
        for _, _, block in iter_row_blocks(matrix, _CHUNK):
            if sp.issparse(block):
                total += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
                squares += np.asarray(block.multiply(block).sum(axis=0, dtype=np.float64)).ravel()
            else:
                block = block.astype(np.float64)
                total += block.sum(axis=0)
                squares += (block * block).sum(axis=0)
        if not (np.isfinite(total).all() and np.isfinite(squares).all()):
            raise ValueError("The expression matrix contains NaN or infinite values; fix or drop them first.")
        self.n_cells = n_cells
        self.mean = total / max(n_cells, 1)
        var = np.maximum(squares / max(n_cells, 1) - self.mean**2, 0.0)
        sd = np.sqrt(var)
        #: Genes that are not constant over the cells (the only ones that can mark a class).
        self.varies = sd > 1e-8
        self.sd = np.where(self.varies, sd, 1.0)

    def times(self, weights: np.ndarray) -> np.ndarray:
        """``Z @ weights`` (cells x columns) without forming ``Z``."""
        scaled = weights / self.sd[:, None]
        offset = self.mean @ scaled
        out = np.empty((self.n_cells, weights.shape[1]))
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            out[start:stop] = np.asarray(block @ scaled) - offset
        return out

    def columns(self, genes: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Dense standardised expression of some genes (cells x genes), optionally of some cells."""
        part = self.matrix[:, genes] if rows is None else self.matrix[rows][:, genes]
        part = part.toarray() if sp.issparse(part) else np.asarray(part)
        return (part.astype(np.float64) - self.mean[genes]) / self.sd[genes]

    def gene_correlations(self, scores: np.ndarray) -> np.ndarray:
        """Pearson correlation of every gene with each column of ``scores`` (genes x columns)."""
        centred = scores - scores.mean(axis=0)
        sums = np.zeros((self.mean.size, scores.shape[1]))
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            part = block.T @ centred[start:stop]
            sums += part.toarray() if sp.issparse(part) else np.asarray(part)
        # sum_c (x - mean) * s_c = sum_c x * s_c (s is centred); divide by n sd_x sd_s
        sd_scores = centred.std(axis=0)
        out = sums / (self.n_cells * self.sd[:, None] * np.where(sd_scores > 1e-12, sd_scores, 1.0))
        out[~self.varies] = 0.0
        return out

    def group_means(self, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """Mean standardised expression per group (``n_groups x genes``); ``-1`` = no group."""
        sums = np.zeros((n_groups, self.mean.size))
        counts = np.bincount(groups[groups >= 0], minlength=n_groups).astype(np.float64)
        for start, stop, block in iter_row_blocks(self.matrix, _CHUNK):
            g = groups[start:stop]
            keep = np.flatnonzero(g >= 0)
            if keep.size == 0:
                continue
            indicator = sp.csr_matrix((np.ones(keep.size), (g[keep], keep)), shape=(n_groups, stop - start))
            part = indicator @ block
            sums += part.toarray() if sp.issparse(part) else np.asarray(part)
        means = sums / np.maximum(counts, 1)[:, None]
        return (means - self.mean) / self.sd
