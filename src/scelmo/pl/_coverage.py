"""How much of a dataset a gene table covers: matched genes, and expression per cell."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from anndata import AnnData

from scelmo._anndata import Expression, expression_matrix
from scelmo._matrix import iter_row_blocks
from scelmo.gene_embeddings import AlignedGeneEmbeddings, GeneEmbeddings

from ._utils import finish, new_axes

__all__ = ["coverage_per_cell", "gene_coverage"]


def coverage_per_cell(
    adata: AnnData,
    gene_embeddings: GeneEmbeddings,
    *,
    layer: str | None = None,
    use_raw: bool | None = None,
) -> np.ndarray:
    """Fraction of each cell's total expression that falls on genes of the table.

    Examples
    --------
    >>> import numpy as np
    >>> from anndata import AnnData
    >>> import scelmo as se
    >>> from scelmo.pl import coverage_per_cell
    >>> adata = AnnData(np.array([[1.0, 3.0], [2.0, 0.0]]))
    >>> adata.var_names = ["CD3E", "XYZ"]
    >>> coverage_per_cell(adata, se.GeneEmbeddings(["CD3E"], np.ones((1, 2)))).tolist()
    [0.25, 1.0]
    """
    return _fractions(*_aligned(adata, gene_embeddings, layer, use_raw))


def _aligned(
    adata: AnnData, gene_embeddings: GeneEmbeddings, layer: str | None, use_raw: bool | None
) -> tuple[Expression, AlignedGeneEmbeddings]:
    """The expression matrix read and the table aligned to its genes."""
    expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    return expression, gene_embeddings.align(expression.var_names, min_coverage=0.0)


def _fractions(expression: Expression, aligned: AlignedGeneEmbeddings) -> np.ndarray:
    """Each cell's share of expression on the matched genes (0 for a cell without expression)."""
    matched = aligned.matched.astype(np.float64)
    out = np.zeros(expression.matrix.shape[0])
    for start, stop, block in iter_row_blocks(expression.matrix, 8192):
        total = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
        covered = np.asarray(block @ matched).ravel()
        out[start:stop] = np.divide(covered, total, out=np.zeros_like(total), where=total > 0)
    return out


def gene_coverage(
    adata: AnnData,
    gene_embeddings: GeneEmbeddings | None = None,
    *,
    key: str = "X_elmo",
    layer: str | None = None,
    use_raw: bool | None = None,
    bins: int = 30,
    ax: Any = None,
    save: str | os.PathLike | None = None,
) -> Any:
    """Coverage of a dataset by a gene table.

    With ``gene_embeddings``: a histogram of the fraction of each cell's expression on genes
    that have a table row (:func:`coverage_per_cell`), titled with the matched gene count.
    Without: a bar of matched and unmatched genes from ``adata.uns[key]['coverage']`` (written
    by :func:`scelmo.tl.elmo_embed`).

    Parameters
    ----------
    adata
        The data.
    gene_embeddings
        The gene table.
    key
        ``elmo_embed``'s ``key_added`` (used without a table).
    layer, use_raw
        Expression matrix (scanpy's rule by default).
    bins
        Histogram bins.
    ax
        Axes to draw into (default: a new figure).
    save
        Save the figure to this path.

    Returns
    -------
    The matplotlib ``Axes``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import numpy as np
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.GeneEmbeddings(adata.raw.var_names[:500], np.ones((500, 4)))
    >>> ax = se.pl.gene_coverage(adata, table)
    """
    if gene_embeddings is not None:
        expression, aligned = _aligned(adata, gene_embeddings, layer, use_raw)
        fractions = _fractions(expression, aligned)
        fig, ax = new_axes(ax, (5.0, 3.5))
        ax.hist(fractions, bins=bins, range=(0.0, 1.0), color="tab:blue")
        ax.set_xlabel(f"fraction of expression on genes in the table ({expression.source})")
        ax.set_ylabel("cells")
        ax.set_title(
            f"{aligned.n_matched} of {len(expression.var_names)} genes matched ({aligned.coverage:.1%}); "
            f"median cell {np.median(fractions):.1%}",
            fontsize=9,
        )
    else:
        record = adata.uns.get(key, {})
        coverage = record.get("coverage") if isinstance(record, dict) else None
        if not coverage:
            raise KeyError(
                f"adata.uns[{key!r}]['coverage'] not found: run scelmo.tl.elmo_embed first, or pass gene_embeddings=."
            )
        matched, unmatched = int(coverage["n_matched"]), int(coverage["n_unmatched"])
        fig, ax = new_axes(ax, (4.0, 3.0))
        ax.bar(["matched", "unmatched"], [matched, unmatched], color=["tab:blue", "tab:gray"])
        ax.set_ylabel("genes")
        ax.set_title(
            f"{matched} of {matched + unmatched} genes in the table ({coverage['coverage']:.1%})", fontsize=9
        )
    finish(fig, save)
    return ax
