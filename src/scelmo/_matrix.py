"""Chunked access to a cells x genes matrix, whatever holds it.

Dense arrays, scipy CSR/CSC (matrix or array), anndata's backed datasets (h5py dense,
``CSRDataset``/``CSCDataset``) and dask arrays are read in blocks of rows (or of columns for
column-major sparse storage, where row slices would rescan the whole matrix), so that the full
matrix is never densified or loaded at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp


def is_dask(matrix: Any) -> bool:
    """Whether ``matrix`` is a dask array (checked without importing dask)."""
    return type(matrix).__module__.startswith("dask.") and hasattr(matrix, "blocks")


def storage_format(matrix: Any) -> str:
    """``"csr"``, ``"csc"``, ``"dense"`` or ``"dask"`` for any supported matrix kind."""
    if is_dask(matrix):
        return "dask"
    fmt = getattr(matrix, "format", None)
    if sp.issparse(matrix) or fmt in ("csr", "csc"):
        if fmt in ("csr", "csc"):
            return fmt
        return "other_sparse"
    return "dense"


def to_float32_block(block: Any) -> np.ndarray | sp.csr_matrix:
    """A block as float32 CSR or float32 ndarray (no copy when already so)."""
    if sp.issparse(block):
        if sp.isspmatrix_csr(block) and block.dtype == np.float32:
            return block  # csr_matrix(block) would copy it (scipy 1.17)
        block = sp.csr_matrix(block)
        if block.dtype != np.float32:
            block = block.astype(np.float32)
        return block
    return np.asarray(block, dtype=np.float32)


def as_row_block(block: Any) -> np.ndarray | sp.csr_matrix:
    """A block as CSR or ndarray in its own dtype (no copy when already CSR)."""
    if sp.issparse(block):
        return block if sp.isspmatrix_csr(block) else sp.csr_matrix(block)
    return np.asarray(block)


def iter_row_blocks(matrix: Any, chunk_size: int, *, float32: bool = True) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(start, stop, block)`` over rows; blocks are ndarrays or scipy CSR.

    Blocks are float32 (:func:`to_float32_block`) unless ``float32=False``, which keeps the
    matrix's own dtype (to check values the cast would round, e.g. counts 1e-9 off an
    integer). Dask arrays are read one row-chunk at a time (split further when a chunk is
    larger than ``chunk_size``).
    """
    convert = to_float32_block if float32 else as_row_block
    n_rows = matrix.shape[0]
    if is_dask(matrix):
        offsets = np.concatenate([[0], np.cumsum(matrix.chunks[0])])
        for i in range(matrix.numblocks[0]):
            band = matrix.blocks[i].compute()
            band_start = int(offsets[i])
            for start in range(0, band.shape[0], chunk_size):
                stop = min(start + chunk_size, band.shape[0])
                yield band_start + start, band_start + stop, convert(band[start:stop])
        return
    in_memory_csr = sp.issparse(matrix) and matrix.format == "csr"
    for start in range(0, n_rows, chunk_size):
        stop = min(start + chunk_size, n_rows)
        block = csr_row_view(matrix, start, stop) if in_memory_csr else matrix[start:stop]
        yield start, stop, convert(block)


def csr_row_view(matrix: sp.csr_matrix | sp.csr_array, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` of a CSR matrix sharing its ``data`` and ``indices`` (no copy).

    scipy's row slicing copies the block's non-zeros, which took as long as the product itself
    in ``elmo_embed``. The view is only read; scipy may at most sort its indices in place,
    which leaves the matrix the same.

    Examples
    --------
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> from scelmo._matrix import csr_row_view
    >>> m = sp.random(5, 4, density=0.5, format="csr", random_state=0)
    >>> view = csr_row_view(m, 1, 3)
    >>> (view != m[1:3]).nnz, np.shares_memory(view.data, m.data)
    (0, True)
    """
    first, last = int(matrix.indptr[start]), int(matrix.indptr[stop])
    # The (data, indices, indptr) constructor copies even with copy=False (scipy 1.17), so the
    # arrays of a valid matrix are attached directly.
    view = sp.csr_matrix((stop - start, matrix.shape[1]), dtype=matrix.dtype)
    view.data = matrix.data[first:last]
    view.indices = matrix.indices[first:last]
    view.indptr = matrix.indptr[start : stop + 1] - matrix.indptr.dtype.type(first)
    view.has_sorted_indices = matrix.has_sorted_indices
    return view


def iter_column_blocks(matrix: Any, chunk_size: int) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(start, stop, block)`` over columns of column-major sparse storage as CSR blocks."""
    n_cols = matrix.shape[1]
    for start in range(0, n_cols, chunk_size):
        stop = min(start + chunk_size, n_cols)
        yield start, stop, to_float32_block(matrix[:, start:stop])


def block_values(block: np.ndarray | sp.csr_matrix) -> np.ndarray:
    """The stored values of a block (non-zeros of sparse blocks), for validity checks."""
    return block.ravel() if isinstance(block, np.ndarray) else block.data
