"""Which expression matrix a subcommand reads (``--layer``, ``--use-raw``), checked before any work."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from ._runtime import CLIError

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["add_matrix_arguments", "check_matrix", "genes_from_column", "require_counts"]

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


def check_matrix(adata: AnnData, *, layer: str | None, use_raw: bool | None, what: str = "input") -> None:
    """Raise a :class:`CLIError` when ``--layer`` / ``--use-raw`` name a matrix ``adata`` lacks.

    Parameters
    ----------
    adata
        The data.
    layer, use_raw
        The options as given.
    what
        What ``adata`` is, for the message.
    """
    if layer is not None and use_raw:
        raise CLIError("--layer and --use-raw exclude each other (adata.raw has no layers)")
    if layer is not None and layer not in adata.layers:
        available = ", ".join(repr(k) for k in adata.layers) or "none"
        raise CLIError(
            f"{what} has no layer {layer!r} (its layers: {available}); fix --layer or leave it out"
        )
    if use_raw and adata.raw is None:
        raise CLIError(f"--use-raw, but the {what} has no adata.raw; leave it out or pass --layer")


def matrix_of(adata: AnnData, *, layer: str | None, use_raw: bool) -> tuple[Any, str]:
    """The matrix ``--layer`` / ``--use-raw`` point at, and its name (``X`` when neither is given)."""
    if use_raw:
        return adata.raw.X, "adata.raw.X"
    if layer is not None:
        return adata.layers[layer], f"adata.layers[{layer!r}]"
    return adata.X, "adata.X"


def require_counts(matrix: Any, where: str) -> None:
    """Raise a :class:`CLIError` when the first cells of ``matrix`` are not non-negative integers.

    A quick check (the first 1,000 cells) so that a job that needs counts fails before loading
    a model; the full check happens where the counts are used.

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
    scelmo.cli._runtime.CLIError: adata.X holds non-integer values (e.g. 0.5), but raw counts are needed: point --layer at the counts (or --use-raw if adata.raw holds them)
    """
    block = matrix[: min(_COUNT_CHECK_ROWS, matrix.shape[0])]
    values = block.data if hasattr(block, "data") and hasattr(block, "nnz") else np.asarray(block)
    values = np.asarray(values).ravel()
    if values.size == 0:
        return
    bad = values[(values < 0) | (values != np.round(values))]
    if bad.size:
        negative = bad[bad < 0]
        kind, example = ("negative", negative[0]) if negative.size else ("non-integer", bad[0])
        raise CLIError(
            f"{where} holds {kind} values (e.g. {float(example):.4g}), but raw counts are needed: "
            "point --layer at the counts (or --use-raw if adata.raw holds them)"
        )


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
    genes are named in a column. The column is read from ``adata.raw.var`` when the job reads
    ``adata.raw`` (scanpy's rule: ``use_raw=None`` with no ``layer`` means raw when present),
    else from ``adata.var``. Missing values become empty names, which match no gene. The
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
    raw = use_raw if use_raw is not None else (layer is None and adata.raw is not None)
    var = adata.raw.var if raw else adata.var
    names = _column_values(var, column, "adata.raw.var" if raw else "adata.var")
    original = var.index
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
