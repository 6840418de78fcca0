"""Which expression matrix a subcommand reads (``--layer``, ``--use-raw``), checked before any work."""

from __future__ import annotations

import argparse
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ._runtime import CLIError, one_line

if TYPE_CHECKING:
    from anndata import AnnData

    from scelmo._anndata import Expression

__all__ = [
    "add_matrix_arguments",
    "as_options",
    "check_matrix",
    "genes_from_column",
    "matrix_of",
    "require_counts",
]

#: Cells read by the quick check that a matrix holds counts.
_COUNT_CHECK_ROWS = 1000


def add_matrix_arguments(parser: argparse.ArgumentParser, *, raw_default: str) -> None:
    """Add ``--layer`` and ``--use-raw/--no-use-raw`` to ``parser``.

    Parameters
    ----------
    parser
        The subcommand's parser.
    raw_default
        What happens when neither option is given, for the help text.
    """
    group = parser.add_argument_group("expression matrix")
    group.add_argument("--layer", metavar="NAME", help="read adata.layers[NAME] instead of X")
    group.add_argument(
        "--use-raw",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"read adata.raw (--no-use-raw: never); default: {raw_default}",
    )


#: The library's advice names Python arguments; the command line names its options.
_OPTIONS = (
    (re.compile(r"`?layer=(['\"])(.+?)\1`?"), r"--layer \2"),
    (re.compile(r"`layer=?`"), "--layer"),
    (re.compile(r"`?use_raw=True`?"), "--use-raw"),
)


def as_options(message: object) -> str:
    """A library message on one line, with its Python arguments written as command-line options.

    Examples
    --------
    >>> from scelmo.cli._matrix import as_options
    >>> as_options("point at it: `layer='counts'` (adata.layers) or `use_raw=True` (adata.raw).")
    'point at it: --layer counts (adata.layers) or --use-raw (adata.raw).'
    """
    text = one_line(message)
    for pattern, option in _OPTIONS:
        text = pattern.sub(option, text)
    return text


def _cli_error(err: ValueError | KeyError, what: str) -> CLIError:
    """The CLI's error for a library error about the matrix (a KeyError's message without quotes)."""
    message = as_options(err.args[0] if isinstance(err, KeyError) and err.args else err)
    return CLIError(message if what == "input" else f"{what}: {message}")


def check_matrix(
    adata: AnnData, *, layer: str | None, use_raw: bool | None, what: str = "input"
) -> Expression:
    """The matrix ``--layer`` / ``--use-raw`` point at, or a :class:`CLIError` when ``adata`` lacks it.

    The choice is :func:`scelmo._anndata.expression_matrix`'s (scanpy's rule: ``adata.raw`` when
    present and no layer is given); its errors are reported with the options' names.

    Parameters
    ----------
    adata
        The data.
    layer, use_raw
        The options as given.
    what
        What ``adata`` is, for the message.

    Returns
    -------
    The chosen matrix, its genes and its name.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo.cli._matrix import check_matrix
    >>> check_matrix(ad.AnnData(np.ones((2, 3))), layer="counts", use_raw=None)
    Traceback (most recent call last):
    ...
    scelmo.cli._runtime.CLIError: Layer 'counts' not found in adata.layers; available layers: []. Fix --layer or leave it out.
    """
    from scelmo._anndata import expression_matrix

    try:
        return expression_matrix(adata, layer=layer, use_raw=use_raw)
    except KeyError as err:  # an unknown layer
        raise CLIError(f"{_cli_error(err, what)} Fix --layer or leave it out.") from err
    except ValueError as err:
        raise _cli_error(err, what) from err


def matrix_of(adata: AnnData, *, layer: str | None, use_raw: bool | None) -> tuple[Any, str]:
    """The matrix ``--layer`` / ``--use-raw`` point at, and its name (see :func:`check_matrix`).

    Parameters
    ----------
    adata
        The data.
    layer, use_raw
        The options as given (``use_raw=False``: never ``adata.raw``).

    Returns
    -------
    The matrix and its name in messages (``"adata.raw.X"``).
    """
    chosen = check_matrix(adata, layer=layer, use_raw=use_raw)
    return chosen.matrix, chosen.where


def require_counts(matrix: Any, where: str) -> None:
    """Raise a :class:`CLIError` when the first cells of ``matrix`` are not non-negative integers.

    A quick check (the first 1,000 cells, :func:`scelmo._checks.check_matrix`) so that a job
    that needs counts fails before loading a model; the full check happens where the counts
    are used.

    Parameters
    ----------
    matrix
        Dense or sparse cells x genes matrix.
    where
        Its name, for the message.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cli._matrix import require_counts
    >>> require_counts(np.array([[0, 3], [1, 0]]), "adata.X")
    >>> require_counts(np.array([[0, 0.5]]), "adata.X")
    Traceback (most recent call last):
    ...
    scelmo.cli._runtime.CLIError: adata.X does not hold raw counts: cell 0 has the value 0.5. This step needs non-negative integer counts. If the right matrix is kept elsewhere, point at it: --layer counts (adata.layers) or --use-raw (adata.raw).
    """
    from scelmo._checks import check_matrix as check_values

    try:
        check_values(matrix, where=where, require="counts", max_rows=_COUNT_CHECK_ROWS)
    except ValueError as err:
        raise _cli_error(err, "input") from err


def _column_values(var: Any, column: str, where: str) -> list[str]:
    if column not in var.columns:
        available = ", ".join(map(str, var.columns)) or "none"
        raise CLIError(f"{where} has no column {column!r} (its columns: {available}); fix --gene-column")
    values = var[column]
    names = ["" if missing else str(value) for value, missing in zip(values, values.isna(), strict=True)]
    if not any(names):
        raise CLIError(
            f"{where}[{column!r}] is empty; --gene-column must name a column of gene symbols or ids"
        )
    return names


@contextmanager
def genes_from_column(
    adata: AnnData, column: str | None, *, layer: str | None, use_raw: bool | None
) -> Iterator[None]:
    """Within the block, the genes of the matrix a job reads are named by a ``var`` column.

    For files whose var names are neither symbols nor Ensembl ids (integers, say) and whose
    genes are named in a column. The column is read from the ``var`` of the matrix the job
    reads (:func:`check_matrix`: ``adata.raw.var`` for ``adata.raw``, else ``adata.var``). Missing values become empty names, which match no gene. The
    original names are back when the block ends, also after an error, so the output keeps them.

    Parameters
    ----------
    adata
        The data (changed in place for the duration of the block).
    column
        The ``--gene-column``; ``None`` changes nothing.
    layer, use_raw
        The ``--layer`` and ``--use-raw`` options, which decide the matrix.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from scelmo.cli._matrix import genes_from_column
    >>> adata = ad.AnnData(np.ones((1, 2)), var=pd.DataFrame({"symbol": ["CD3E", "MS4A1"]}, index=["0", "1"]))
    >>> with genes_from_column(adata, "symbol", layer=None, use_raw=None):
    ...     adata.var_names.tolist()
    ['CD3E', 'MS4A1']
    >>> adata.var_names.tolist()
    ['0', '1']
    """
    if column is None:
        yield
        return
    chosen = check_matrix(adata, layer=layer, use_raw=use_raw)
    raw = chosen.use_raw
    names = _column_values(chosen.var, column, "adata.raw.var" if raw else "adata.var")
    original = chosen.var.index
    with warnings.catch_warnings():
        # Two columns may carry one symbol; the jobs handle repeated names.
        warnings.filterwarnings("ignore", message=".*not unique.*", category=UserWarning)
        if raw:
            # Raw has no var_names setter; its var frame is its own.
            adata.raw.var.index = names
        else:
            adata.var_names = names
    try:
        yield
    finally:
        if raw:
            adata.raw.var.index = original
        else:
            adata.var_names = original
