"""Class scores smoothed over the cells' neighbour graph: a cell is scored with its neighbours.

A zero-shot signature of a few genes is read in each cell from a handful of sparse counts, so
one cell's class scores are noisy; cells of one type sit next to each other in expression
space, so averaging each cell's scores with its neighbours' keeps what the type shares and
cancels what the dropout of one cell made. Each round replaces the scores ``S`` by
``(S + W S) / 2``, with ``W`` the row-normalised neighbour graph, so a cell keeps half its own
score in every round and the result stays a linear function of the per-gene expression (the
explanations of :func:`scelmo.tl.explain_annotation` stay exact sums over genes).

The graph, in order of preference:

1. ``adata.obsp[uns[neighbors_key]['connectivities_key']]`` when ``neighbors_key`` is given;
2. ``adata.obsp['connectivities']``, the graph :func:`scanpy.pp.neighbors` left (so an
   integrated graph, such as one built on a batch-corrected representation, is honoured);
3. otherwise a :data:`N_NEIGHBORS`-nearest-neighbour graph (cosine, hnswlib on one thread, so
   the same on every run) over the first :data:`N_COMPONENTS` principal components of the
   :data:`N_GENES` most variable genes of the expression matrix the scores were read from.
   A dask matrix has no such fallback: run :func:`scanpy.pp.neighbors` first, or the scores
   are left unsmoothed (with a warning).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from scelmo._matrix import is_dask

__all__ = [
    "N_COMPONENTS",
    "N_GENES",
    "N_NEIGHBORS",
    "CellGraph",
    "cell_graph",
    "smooth_scores",
    "smoothing_weights",
]

#: Neighbours per cell of the graph built when ``adata`` has none (the cell itself included).
N_NEIGHBORS = 15
#: Principal components the built graph is computed on.
N_COMPONENTS = 50
#: The most variable genes those components are computed from (as scanpy's tutorials use highly
#: variable genes: the rest adds noise and most of the cost).
N_GENES = 2000


@dataclass(frozen=True)
class CellGraph:
    """A row-normalised cell neighbour graph and where it came from.

    Attributes
    ----------
    weights
        ``(n_cells, n_cells)`` CSR matrix, each row summing to 1 (a cell without neighbours
        keeps itself).
    source
        ``"obsp['connectivities']"``, or ``"15 nearest neighbours on 50 PCs of X"`` and the like.
    """

    weights: sparse.csr_matrix
    source: str


def _row_normalised(graph: Any) -> sparse.csr_matrix:
    graph = sparse.csr_matrix(graph, dtype=np.float64)
    graph.setdiag(0.0)
    graph.eliminate_zeros()
    sums = np.asarray(graph.sum(axis=1)).ravel()
    alone = sums <= 0
    graph = sparse.diags(np.where(alone, 0.0, 1.0 / np.where(alone, 1.0, sums))) @ graph
    # a cell without neighbours is its own neighbourhood
    return sparse.csr_matrix(graph + sparse.diags(alone.astype(np.float64)))


def _built_graph(matrix: Any, source: str) -> CellGraph:
    from anndata import AnnData

    from scelmo._neighbors import HnswIndex

    n_cells = matrix.shape[0]
    genes = _most_variable(matrix, N_GENES)
    n_components = max(1, min(N_COMPONENTS, n_cells - 1, genes.size - 1))
    k = min(N_NEIGHBORS, n_cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import scanpy as sc

        part = matrix[:, genes]
        holder = AnnData(
            sparse.csr_matrix(part, dtype=np.float32) if sparse.issparse(part) else np.asarray(part)
        )
        sc.pp.pca(holder, n_comps=n_components, random_state=0)
    components = np.asarray(holder.obsm["X_pca"], dtype=np.float32)
    # a cell with all-zero components (no expression at all) cannot have a cosine neighbour
    components[np.linalg.norm(components, axis=1) == 0, 0] = 1e-6
    neighbours, _ = HnswIndex(components, metric="cosine", n_threads=1, random_state=0).query(components, k=k)
    rows = np.repeat(np.arange(n_cells), neighbours.shape[1])
    graph = sparse.csr_matrix((np.ones(rows.size), (rows, neighbours.ravel())), shape=(n_cells, n_cells))
    return CellGraph(
        _row_normalised(graph),
        f"{k} nearest neighbours (cosine) on {n_components} principal components of the {genes.size} "
        f"most variable genes of {source}",
    )


def _most_variable(matrix: Any, n_genes: int) -> np.ndarray:
    """The ``n_genes`` genes of largest variance over the cells, in their order in the matrix."""
    if matrix.shape[1] <= n_genes:
        return np.arange(matrix.shape[1])
    mean = np.asarray(matrix.mean(axis=0), dtype=np.float64).ravel()
    squares = matrix.multiply(matrix) if sparse.issparse(matrix) else np.square(matrix)
    variance = np.asarray(squares.mean(axis=0), dtype=np.float64).ravel() - mean**2
    return np.sort(np.argsort(-variance, kind="stable")[:n_genes])


def cell_graph(adata: Any, matrix: Any, source: str, *, neighbors_key: str | None = None) -> CellGraph | None:
    """The neighbour graph to smooth scores over (see the module description), or ``None``.

    Parameters
    ----------
    adata
        The cells.
    matrix
        The expression matrix the scores are read from (the graph is built on it when
        ``adata`` has none).
    source
        What ``matrix`` is (``"X"``, ``"raw"``, ``"layers['name']"``), for the record.
    neighbors_key
        ``uns`` key of a :func:`scanpy.pp.neighbors` result to use.

    Returns
    -------
    The graph; ``None`` for a dask matrix without a graph in ``obsp`` (with a warning).

    Examples
    --------
    >>> import scanpy as sc
    >>> from scelmo.annotation._smoothing import cell_graph
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> cell_graph(adata, adata.X, "X").source
    "obsp['connectivities']"
    """
    if neighbors_key is not None:
        if neighbors_key not in adata.uns:
            raise KeyError(
                f"adata.uns[{neighbors_key!r}] not found: run sc.pp.neighbors(adata, key_added={neighbors_key!r}) "
                "first, or leave neighbors_key=None."
            )
        key = adata.uns[neighbors_key].get("connectivities_key", f"{neighbors_key}_connectivities")
        return CellGraph(_row_normalised(adata.obsp[key]), f"obsp[{key!r}]")
    if "connectivities" in adata.obsp:
        return CellGraph(_row_normalised(adata.obsp["connectivities"]), "obsp['connectivities']")
    if is_dask(matrix):
        warnings.warn(
            "Zero-shot scores are not smoothed: a dask matrix has no neighbour graph in obsp. Run "
            "sc.pp.neighbors on a representation (for example obsm['X_elmo'] or X_pca) first, or pass smooth=0.",
            UserWarning,
            stacklevel=4,
        )
        return None
    return _built_graph(matrix, source)


def smooth_scores(scores: np.ndarray, graph: CellGraph, rounds: int) -> np.ndarray:
    """``rounds`` times ``S <- (S + W S) / 2`` (see the module description).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> from scelmo.annotation._smoothing import CellGraph, smooth_scores
    >>> graph = CellGraph(sparse.csr_matrix([[0.0, 1.0], [1.0, 0.0]]), "two cells")
    >>> smooth_scores(np.array([[1.0], [0.0]]), graph, 1).ravel().tolist()
    [0.5, 0.5]
    """
    out = np.asarray(scores, dtype=np.float64)
    for _ in range(rounds):
        out = 0.5 * out + 0.5 * (graph.weights @ out)
    return out


def smoothing_weights(graph: CellGraph, start: np.ndarray, rounds: int) -> np.ndarray:
    """``start @ ((I + W) / 2) ** rounds``: how much each cell's score enters a weighted sum of smoothed scores.

    With ``start`` the indicator of one cell, the cells its smoothed score is read from; with
    ``start = 1 / n`` everywhere, each cell's share of the mean smoothed score.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> from scelmo.annotation._smoothing import CellGraph, smoothing_weights
    >>> graph = CellGraph(sparse.csr_matrix([[0.0, 1.0], [1.0, 0.0]]), "two cells")
    >>> smoothing_weights(graph, np.array([1.0, 0.0]), 1).tolist()
    [0.5, 0.5]
    """
    weights = np.asarray(start, dtype=np.float64)
    for _ in range(rounds):
        # row vector times W, as W's transpose (a CSC view, no copy) times a column
        weights = 0.5 * weights + 0.5 * (graph.weights.T @ weights)
    return weights
