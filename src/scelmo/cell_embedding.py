"""Cell embeddings as expression-weighted averages of gene embeddings (scELMo / GenePT).

For a cells x genes matrix ``X`` and a gene table ``E`` aligned to its columns (zero rows for
unmatched genes):

- ``"wa"`` (scELMo): ``(X / X.sum(1)) @ E``; row sums over all genes, so unmatched genes
  dilute the weights as in the paper. ``renormalize=True`` divides by the sum over matched
  genes instead.
- ``"aa"`` (GenePT-w): ``X @ E / G`` with ``G`` the number of genes in ``X``.

We compute ``X @ E`` first and scale each row afterwards (the same numbers, one pass fewer),
in float32 and in blocks of rows, so memory is the output plus one block. Values so large
that a cell's product overflows float32 (about 3.4e38; log-normalised expression is below
~20) raise an error naming the cells instead of returning NaN or infinite embeddings.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ._checks import Requirement, check_values
from ._matrix import iter_column_blocks, iter_row_blocks, storage_format, to_float32_block
from ._products import DENSE_BLOCK_BYTES, Backend, TableProduct, resolve_backend

Mode = Literal["wa", "aa"]
#: Cells per block: the product kernels (numba, torch) parallelise over a block's rows, so smaller
#: blocks were slower (measured: 100k x 20k, 1536-d table), while the block stays ~0.1 GiB.
DEFAULT_CHUNK_SIZE = 8192


@dataclass(frozen=True)
class EmbeddingStats:
    """What happened while embedding: how many cells had no signal, which kernel ran."""

    n_cells: int
    #: ``None`` for a dask matrix: the embeddings are not computed yet.
    n_empty_cells: int | None
    backend: str
    storage: str


def weighted_gene_average(
    matrix: Any,
    table: np.ndarray,
    *,
    mode: Mode = "wa",
    matched: np.ndarray | None = None,
    renormalize: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: Backend = "auto",
    progress: bool = True,
    cell_names: Any = None,
) -> tuple[np.ndarray, EmbeddingStats]:
    """Cell embeddings ``(n_cells, dim)`` in float32 from any supported matrix kind.

    Parameters
    ----------
    matrix
        Cells x genes: ndarray, scipy sparse, anndata backed dataset or dask array.
    table
        Genes x dims, aligned to the columns of ``matrix`` (zero rows where unmatched).
    mode
        ``"wa"`` or ``"aa"`` (see the module docstring).
    matched
        Boolean mask of genes that have a table row; needed for ``renormalize``.
    renormalize
        ``"wa"`` only: weights sum to one over matched genes instead of all genes.
    chunk_size
        Cells (or, for column-major storage, genes) per block.
    backend
        Product kernel, see :class:`scelmo._products.TableProduct`.
    progress
        Show a progress bar.
    cell_names
        Names of the cells (``adata.obs_names``), for messages; default their positions.

    Returns
    -------
    The embeddings and an :class:`EmbeddingStats`. Cells whose weights sum to zero get a zero
    vector (the originals return NaN) and are counted in ``n_empty_cells``.

    Raises
    ------
    ValueError
        If the matrix holds NaN or infinite values, negative values (``wa``), or values so large
        that a cell's embedding overflows float32 (the message names the cells).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_embedding import weighted_gene_average
    >>> X = np.array([[1.0, 3.0], [0.0, 0.0]])
    >>> emb, stats = weighted_gene_average(X, np.eye(2), progress=False)
    >>> emb[0].tolist(), stats.n_empty_cells
    ([0.25, 0.75], 1)
    """
    if mode not in ("wa", "aa"):
        raise ValueError(f"`mode` must be 'wa' or 'aa', got {mode!r}.")
    if renormalize and mode != "wa":
        raise ValueError("`renormalize` applies to mode='wa' only.")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be positive, got {chunk_size}.")
    n_cells, n_genes = matrix.shape
    table = np.ascontiguousarray(table, dtype=np.float32)
    if table.shape[0] != n_genes:
        raise ValueError(f"The table has {table.shape[0]} rows but the matrix has {n_genes} genes.")
    if renormalize and matched is None:
        raise ValueError("`renormalize=True` needs the `matched` mask.")
    weights_mask = np.asarray(matched, dtype=np.float32) if renormalize else None

    storage = storage_format(matrix)
    if storage == "other_sparse":
        matrix = sp.csr_matrix(matrix)
        storage = "csr"
    if storage == "dense":
        # A dense block is cells x all genes: keep it near DENSE_BLOCK_BYTES whatever the gene count.
        chunk_size = max(1, min(chunk_size, DENSE_BLOCK_BYTES // (4 * max(n_genes, 1))))
    if storage == "dask":
        return _lazy_average(matrix, table, mode, weights_mask, backend), EmbeddingStats(
            n_cells=n_cells, n_empty_cells=None, backend=resolve_backend(backend), storage=storage
        )
    out = np.zeros((n_cells, table.shape[1]), dtype=np.float32)
    totals = np.zeros(n_cells, dtype=np.float64)
    check = _BlockCheck(mode)
    product = TableProduct(table, backend)

    # Overflow is detected on the result below (and reported with the cells' names), not by numpy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        _accumulate(matrix, storage, table, product, out, totals, check, weights_mask, chunk_size, progress)
        empty = _scale_rows(out, totals, mode, n_genes)
        overflow = _overflowing_rows(out, totals)
    if overflow.size:
        raise ValueError(_overflow_message(overflow, n_cells, check.largest, cell_names))
    n_empty = int(empty.sum())
    if n_empty:
        reason = "no expressed matched gene" if renormalize else "zero total expression"
        warnings.warn(
            f"{n_empty} of {n_cells} cells have {reason}; they get a zero embedding "
            f"(first: cell {int(np.flatnonzero(empty)[0])}). Filter them with sc.pp.filter_cells.",
            UserWarning,
            stacklevel=2,
        )
    return out, EmbeddingStats(
        n_cells=n_cells, n_empty_cells=n_empty, backend=product.backend, storage=storage
    )


def _scale_rows(out: np.ndarray, totals: np.ndarray, mode: Mode, n_genes: int) -> np.ndarray:
    """Turn the rows of ``X @ E`` into averages in place; return the mask of cells with no weight."""
    if mode == "aa":
        out *= np.float32(1.0 / n_genes)
        return totals == 0
    empty = totals <= 0
    scale = np.zeros(len(totals), dtype=np.float64)
    np.divide(1.0, totals, out=scale, where=~empty)
    out *= scale.astype(np.float32)[:, None]
    return empty


def _overflowing_rows(out: np.ndarray, totals: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~np.isfinite(out).all(axis=1) | ~np.isfinite(totals))


def embed_block(
    block: Any,
    table: np.ndarray | TableProduct,
    *,
    start: int,
    mode: Mode,
    weights_mask: np.ndarray | None,
    backend: Backend = "auto",
) -> np.ndarray:
    """The embeddings of one block of cells (all genes): the pure function a dask task runs.

    It does for one block what :func:`weighted_gene_average` does for each block of an
    in-memory matrix, with the same kernels (checks, ``X @ E``, weight sums, scaling), so that
    both give the same numbers.

    Parameters
    ----------
    block
        Cells x all genes: ndarray or scipy sparse.
    table
        Genes x dims float32 table aligned to the block's columns, or its
        :class:`~scelmo._products.TableProduct` (built once for many blocks; ``backend`` is
        then its own).
    start
        Index of the block's first cell in the whole matrix, for messages.
    mode, weights_mask, backend
        As in :func:`weighted_gene_average` (``weights_mask``: float32 matched-gene mask when
        renormalizing, else ``None``).

    Returns
    -------
    Float32 ``(n_cells_in_block, dim)`` embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_embedding import embed_block
    >>> embed_block(np.array([[1.0, 3.0]]), np.eye(2, dtype=np.float32), start=0, mode="wa", weights_mask=None).tolist()
    [[0.25, 0.75]]
    """
    product = table if isinstance(table, TableProduct) else TableProduct(table, backend)
    block = to_float32_block(block)
    check = _BlockCheck(mode)
    check(block, offset=start)
    out = np.empty((block.shape[0], product.table.shape[1]), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        totals = _row_weight_sums(block, weights_mask)
        product.into(block, out)
        _scale_rows(out, totals, mode, product.table.shape[0])
        overflow = _overflowing_rows(out, totals)
    if overflow.size:
        raise ValueError(_overflow_message(overflow + start, block.shape[0], check.largest, None))
    return out


def _lazy_average(
    matrix: Any, table: np.ndarray, mode: Mode, weights_mask: np.ndarray | None, backend: Backend
) -> Any:
    """A dask array of the embeddings: one :func:`embed_block` task per row chunk of ``matrix``.

    The table's product (the table and its kernel's tiles, built once here) enters the graph as
    one key that every task depends on: a distributed scheduler sends it to each worker once,
    and no task rebuilds the tiles.
    """
    from scelmo._dask_blocks import lazy_row_chunks, shared

    return lazy_row_chunks(
        embed_block,
        matrix,
        shared(TableProduct(table, backend), pure=False),
        width=table.shape[1],
        out_dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        mode=mode,
        weights_mask=None if weights_mask is None else shared(weights_mask),
    )


def _overflow_message(rows: np.ndarray, n_cells: int, largest: float, cell_names: Any) -> str:
    names = [str(cell_names[i]) if cell_names is not None else str(int(i)) for i in rows[:5]]
    shown = ", ".join(repr(name) for name in names) + (f" and {rows.size - 5} more" if rows.size > 5 else "")
    return (
        f"The embeddings of {rows.size} of {n_cells} cells ({shown}) overflow float32 (largest expression value "
        f"{largest:.3g}): the values are far too large for averaging gene embeddings. The input is probably not "
        "log-normalised expression: normalise it (sc.pp.normalize_total, then sc.pp.log1p) or point to the "
        "log-normalised matrix with `layer=` or `use_raw=`."
    )


def _accumulate(
    matrix: Any,
    storage: str,
    table: np.ndarray,
    product: TableProduct,
    out: np.ndarray,
    totals: np.ndarray,
    check: _BlockCheck,
    weights_mask: np.ndarray | None,
    chunk_size: int,
    progress: bool,
) -> None:
    """``out = X @ E`` and ``totals`` = the weight sums, block by block."""
    n_cells, n_genes = matrix.shape
    if storage == "csc":
        # Row slices of column-major storage rescan every column: walk gene blocks instead.
        bar = tqdm(
            total=math.ceil(n_genes / chunk_size), desc="elmo_embed", unit="block", disable=not progress
        )
        for g_start, g_stop, block in iter_column_blocks(matrix, chunk_size):
            check(block, offset=0)
            totals += _row_weight_sums(block, None if weights_mask is None else weights_mask[g_start:g_stop])
            sub = TableProduct(table[g_start:g_stop], product.backend)
            scratch = np.empty((min(chunk_size, n_cells), table.shape[1]), dtype=np.float32)
            for r_start in range(0, n_cells, chunk_size):
                r_stop = min(r_start + chunk_size, n_cells)
                view = scratch[: r_stop - r_start]
                sub.into(block[r_start:r_stop], view)
                out[r_start:r_stop] += view
            bar.update()
        bar.close()
    else:
        bar = tqdm(total=n_cells, desc="elmo_embed", unit="cell", disable=not progress)
        for start, stop, block in iter_row_blocks(matrix, chunk_size):
            check(block, offset=start)
            totals[start:stop] = _row_weight_sums(block, weights_mask)
            product.into(block, out[start:stop])
            bar.update(stop - start)
        bar.close()


def _row_weight_sums(block: np.ndarray | sp.csr_matrix, weights_mask: np.ndarray | None) -> np.ndarray:
    if weights_mask is not None:
        return np.asarray(block @ weights_mask.astype(np.float64), dtype=np.float64).ravel()
    sums = np.asarray(block.sum(axis=1, dtype=np.float64), dtype=np.float64).ravel()
    overflow = ~np.isfinite(sums)
    if overflow.any() and sp.issparse(block):
        # scipy's sparse sum(dtype=float64) still adds in the matrix dtype: a float32 row of huge
        # values overflows to inf (then a silent zero embedding). Redo those rows in float64.
        sums[overflow] = np.asarray(sp.csr_matrix(block)[overflow].astype(np.float64).sum(axis=1)).ravel()
    return sums


class _BlockCheck:
    """Refuses NaN/inf anywhere and negative weights in ``wa`` mode; keeps the largest value for messages."""

    def __init__(self, mode: Mode) -> None:
        self.require: Requirement = "nonnegative" if mode == "wa" else "finite"
        #: Largest absolute value seen, for the overflow message.
        self.largest = 0.0

    def __call__(self, block: np.ndarray | sp.csr_matrix, *, offset: int) -> None:
        largest = check_values(block, start=offset, where="The expression matrix", require=self.require)
        self.largest = max(self.largest, largest)
