"""Row-chunk tasks on a dask array: the shape every dask-native scoring step takes.

A tool that reads a dask matrix (cells x genes, cells x dims or cells x tokens) runs one task
per row chunk, each calling the same pure function as the in-memory path on its block, so
that both give the same numbers. Objects every task needs (a weight matrix, an index, a
model) enter the graph once, through :func:`shared`: a distributed scheduler then sends each
to a worker once, not with every task. Only what the tasks return (per-cell outputs, or sums
over the block's cells) comes back to the calling process; the matrix never does.

This is a core module: dask is imported inside the functions (it is an optional dependency).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["chunk_bounds", "lazy_row_chunks", "map_row_chunks", "one_column_chunk", "shared"]


def one_column_chunk(matrix: Any) -> Any:
    """``matrix`` with all its columns in one chunk, so that each task sees whole rows."""
    return matrix.rechunk({1: -1}) if matrix.ndim == 2 and matrix.numblocks[1] > 1 else matrix


def chunk_bounds(matrix: Any) -> list[tuple[int, int]]:
    """``(start, stop)`` rows of each row chunk of a dask array."""
    stops = np.cumsum(matrix.chunks[0]).astype(int)
    starts = np.concatenate([[0], stops[:-1]]).astype(int)
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def shared(obj: Any, *, pure: bool = True) -> Any:
    """``obj`` as one key of the graph (a :func:`dask.delayed` value) for every task that takes it.

    ``pure=False`` names it by a random key instead of hashing it (models, indexes: hashing
    would read all their weights).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo._dask_blocks import shared
    >>> shared(np.ones(3)).compute().tolist()
    [1.0, 1.0, 1.0]
    """
    import dask

    return dask.delayed(obj, pure=pure)


def map_row_chunks(
    func: Callable[..., Any],
    matrix: Any,
    *args: Any,
    rows: Sequence[np.ndarray] = (),
    compute: bool = True,
    **kwargs: Any,
) -> list[Any]:
    """``func(block, *row_parts, *args, **kwargs)`` for each row chunk of ``matrix``, in row order.

    Parameters
    ----------
    func
        A pure function of one block (the in-memory path's function).
    matrix
        A dask array (rechunked to one column chunk first).
    *args, **kwargs
        Passed to every task; wrap a large object with :func:`shared` so it is one key.
    rows
        Per-cell arrays (length ``n_rows``): each task gets its chunk's rows of each, after the
        block.
    compute
        Compute the tasks (with the active scheduler: a ``distributed.Client`` when one is
        set) and return their results; ``False`` returns the delayed tasks.

    Returns
    -------
    One result (or delayed task) per row chunk.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from scelmo._dask_blocks import map_row_chunks
    >>> x = da.from_array(np.arange(12.0).reshape(6, 2), chunks=(4, 1))
    >>> [float(s) for s in map_row_chunks(np.sum, x)]
    [28.0, 38.0]
    """
    import dask

    matrix = one_column_chunk(matrix)
    blocks = matrix.to_delayed().ravel()
    task = dask.delayed(func, pure=True)
    tasks = [
        task(block, *(part[start:stop] for part in rows), *args, **kwargs)
        for block, (start, stop) in zip(blocks, chunk_bounds(matrix), strict=True)
    ]
    return list(dask.compute(*tasks)) if compute else tasks


def lazy_row_chunks(
    func: Callable[..., Any],
    matrix: Any,
    *args: Any,
    width: int,
    out_dtype: Any,
    meta: Any,
    **kwargs: Any,
) -> Any:
    """A lazy dask array stacking ``func(block, *args, start=first_row, **kwargs)`` over the row chunks.

    The shape of the dask-native tools' outputs (embeddings, tokens): one task per row chunk of
    ``matrix``, each returning a ``(chunk rows, width)`` array of ``out_dtype`` (``meta`` gives
    its kind: an ndarray or a scipy sparse matrix); nothing is computed.

    Examples
    --------
    >>> import dask.array as da
    >>> import numpy as np
    >>> from scelmo._dask_blocks import lazy_row_chunks
    >>> x = da.from_array(np.arange(6.0).reshape(3, 2), chunks=(2, 1))
    >>> def first_row(block, start):
    ...     return np.full((block.shape[0], 1), start)
    >>> lazy_row_chunks(first_row, x, width=1, out_dtype=int, meta=np.empty((0, 0), int)).compute().ravel().tolist()
    [0, 0, 2]
    """
    import dask
    import dask.array as da

    matrix = one_column_chunk(matrix)
    task = dask.delayed(func, pure=True)
    pieces = [
        da.from_delayed(
            task(block, *args, start=start, **kwargs), shape=(stop - start, width), dtype=out_dtype, meta=meta
        )
        for block, (start, stop) in zip(matrix.to_delayed().ravel(), chunk_bounds(matrix), strict=True)
    ]
    return da.concatenate(pieces, axis=0) if pieces else da.zeros((0, width), dtype=out_dtype)
