"""Text-query scores of :func:`scelmo.tl.score_text` on an embedding of the cells."""

from __future__ import annotations

import os
from typing import Any

from anndata import AnnData

from ._utils import finish

__all__ = ["text_scores"]


def text_scores(
    adata: AnnData,
    key: str = "text_score",
    *,
    basis: str = "umap",
    ncols: int = 3,
    save: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Any:
    """Each query's score (:func:`scelmo.tl.score_text`) coloured on ``obsm['X_' + basis]``, one panel a query.

    Parameters
    ----------
    adata
        Data with ``uns[key]`` and its score columns in ``obs``.
    key
        The ``key_added`` of :func:`~scelmo.tl.score_text`.
    basis
        The embedding to draw on (``"umap"``: ``obsm['X_umap']``).
    ncols
        Panels per row.
    save
        Write the figure to this path.
    **kwargs
        Passed to :func:`scanpy.pl.embedding` (``cmap``, ``vmax``...).

    Returns
    -------
    The matplotlib figure; each panel is titled with its query text.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> se.tl.score_text(adata, "cytotoxic natural killer cells", gene_embeddings=table)  # doctest: +SKIP
    >>> fig = se.pl.text_scores(adata)  # doctest: +SKIP
    """
    import scanpy as sc

    record = adata.uns.get(key)
    if not isinstance(record, dict) or "queries" not in record:
        raise KeyError(
            f"adata.uns[{key!r}] has no text scores: run scelmo.tl.score_text(..., key_added={key!r}) first."
        )
    if f"X_{basis}" not in adata.obsm:
        raise KeyError(f"adata.obsm['X_{basis}'] not found: compute it (e.g. sc.tl.umap) or pass basis=.")
    columns = list(record["queries"])
    kwargs.setdefault("cmap", "viridis")
    fig = sc.pl.embedding(
        adata,
        basis,
        color=columns,
        title=[str(record["queries"][c]) for c in columns],
        ncols=ncols,
        show=False,
        return_fig=True,
        **kwargs,
    )
    finish(fig, save)
    return fig
