"""What an expression matrix must hold: the value checks every tool runs on its blocks.

One place for the three requirements the package knows, so that a tool, a model and the
command line say the same thing about the same bad input:

``"finite"``
    no NaN or infinite values (embeddings, PCA);
``"nonnegative"``
    finite and >= 0: counts or log-normalised expression, usable as averaging weights;
``"counts"``
    non-negative integers, as rank-value tokenization needs.

Each check names the first bad cell and says how to point at the right matrix.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from ._matrix import block_values, iter_row_blocks

Requirement = Literal["finite", "nonnegative", "counts"]
REQUIREMENTS = ("finite", "nonnegative", "counts")

_POINT_AT_MATRIX = (
    "If the right matrix is kept elsewhere, point at it: `layer='counts'` (adata.layers) or "
    "`use_raw=True` (adata.raw)."
)


def first_bad_row(block: np.ndarray | sp.spmatrix, bad_values: np.ndarray) -> int:
    """The row of ``block`` that holds the first ``True`` of ``bad_values`` (its stored values)."""
    position = int(np.flatnonzero(bad_values)[0])
    if isinstance(block, np.ndarray):
        return position // max(block.shape[1], 1)
    return int(np.searchsorted(block.indptr, position, side="right") - 1)


def show_value(value: float) -> str:
    """``value`` in few digits, but never shown as an integer when it is not one (3.000000001)."""
    text = f"{value:g}"
    if np.isfinite(value) and value != round(value) and float(text) == round(value):
        return repr(value)
    return text


def check_values(
    block: np.ndarray | sp.spmatrix,
    *,
    start: int,
    where: str,
    require: Requirement,
    purpose: str | None = None,
    fix: str | None = None,
) -> float:
    """Refuse a block whose values break ``require``; return its largest absolute value.

    Parameters
    ----------
    block
        A dense or CSR block of rows of the matrix, in the matrix's own dtype (a float32 cast
        would round counts that are 1e-9 off an integer).
    start
        Index of the block's first row in the matrix, for the message.
    where
        The matrix's name (``"adata.X"``, ``"adata.layers['counts']"``), for the message.
    require
        ``"finite"``, ``"nonnegative"`` or ``"counts"`` (see the module's docstring).
    purpose
        What needs the values, for the message (``"LangCell's rank-value tokenization"``).
    fix
        How to point at the right matrix, for the message; default: ``layer='counts'`` or
        ``use_raw=True`` (a caller that cannot read ``adata.raw`` says what it can read).

    Returns
    -------
    The largest absolute value of the block (0.0 when it stores none), for overflow messages.

    Raises
    ------
    ValueError
        Naming the first bad cell, its value and how to point at the right matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo._checks import check_values
    >>> check_values(np.array([[0.0, 2.5]]), start=0, where="adata.X", require="nonnegative")
    2.5
    >>> check_values(np.array([[0, 1], [0, 0.5]]), start=10, where="adata.X", require="counts")
    Traceback (most recent call last):
    ...
    ValueError: adata.X does not hold raw counts: cell 11 has the value 0.5. This step needs non-negative integer counts. If the right matrix is kept elsewhere, point at it: `layer='counts'` (adata.layers) or `use_raw=True` (adata.raw).
    """
    if require not in REQUIREMENTS:
        raise ValueError(f"`require` must be one of {REQUIREMENTS}, got {require!r}.")
    hint = fix or _POINT_AT_MATRIX
    values = block_values(block)
    if values.size == 0:
        return 0.0
    integer = np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_
    if not integer:
        bad = ~np.isfinite(values)
        if bad.any():
            row = start + first_bad_row(block, bad)
            raise ValueError(
                f"{where} contains NaN or infinite values (cell {row} is the first); fix or drop them. {hint}"
            )
    if require in ("nonnegative", "counts"):
        bad = values < 0
        if bad.any():
            row = start + first_bad_row(block, bad)
            raise ValueError(
                f"{where} has negative values: cell {row} has the value {show_value(float(values[bad][0]))}, so "
                f"it is not counts or log-normalised expression (is it scaled with sc.pp.scale?). {hint}"
            )
    if require == "counts" and not integer:
        bad = values != np.rint(values)
        if bad.any():
            row = start + first_bad_row(block, bad)
            raise ValueError(
                f"{where} does not hold raw counts: cell {row} has the value {show_value(float(values[bad][0]))}. "
                f"{purpose or 'This step'} needs non-negative integer counts. {hint}"
            )
    return float(np.abs(values).max())


def check_matrix(
    matrix: Any,
    *,
    where: str,
    require: Requirement,
    chunk_size: int = 8192,
    max_rows: int | None = None,
    purpose: str | None = None,
    fix: str | None = None,
) -> float:
    """Run :func:`check_values` over the row blocks of ``matrix``; return its largest absolute value.

    Parameters
    ----------
    matrix
        Dense, scipy sparse, backed or dask cells x genes matrix.
    where, require, purpose, fix
        As for :func:`check_values`.
    chunk_size
        Rows per block.
    max_rows
        Check only the first rows: a quick check that fails a job before it loads a model (the
        full check happens where the values are used).

    Returns
    -------
    The largest absolute value seen.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from scelmo._checks import check_matrix
    >>> check_matrix(sp.random(100, 20, density=0.1, format="csr", random_state=0) * 10, where="adata.X", require="nonnegative") > 0
    True
    """
    if max_rows is not None:
        matrix = matrix[: min(max_rows, matrix.shape[0])]
    largest = 0.0
    for start, _, block in iter_row_blocks(matrix, chunk_size, float32=False):
        largest = max(
            largest, check_values(block, start=start, where=where, require=require, purpose=purpose, fix=fix)
        )
    return largest
