"""Which expression matrix a subcommand reads (``--layer``, ``--use-raw``), checked before any work."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import numpy as np

from ._runtime import CLIError

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["add_matrix_arguments", "check_matrix", "require_counts"]

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
