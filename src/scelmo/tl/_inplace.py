"""Where a tool writes its results: into ``adata`` itself, or into a copy (``copy=True``)."""

from __future__ import annotations

from anndata import AnnData


def target(adata: AnnData, copy: bool) -> AnnData:
    """``adata``, or a copy of it when ``copy`` is true (refused for backed AnnData).

    Examples
    --------
    >>> import numpy as np
    >>> from anndata import AnnData
    >>> from scelmo.tl._inplace import target
    >>> adata = AnnData(np.ones((2, 2)))
    >>> target(adata, copy=True) is adata, target(adata, copy=False) is adata
    (False, True)
    """
    if not copy:
        return adata
    if adata.isbacked:
        raise ValueError("copy=True is not supported for backed AnnData; embed in place instead.")
    return adata.copy()
