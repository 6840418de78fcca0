"""Choosing the expression matrix of an AnnData the way scanpy does (``layer`` / ``use_raw``)."""

from __future__ import annotations

from typing import Any

from anndata import AnnData


def expression_matrix(adata: AnnData, *, layer: str | None, use_raw: bool | None) -> tuple[Any, Any, str]:
    """The matrix to use, its gene names, and where it came from.

    ``use_raw=None`` follows scanpy: ``adata.raw`` when it exists and no ``layer`` is given.
    """
    if layer is not None and use_raw:
        raise ValueError("Pass either `layer` or `use_raw=True`, not both.")
    if use_raw is None:
        use_raw = layer is None and adata.raw is not None
    if use_raw:
        if adata.raw is None:
            raise ValueError("use_raw=True but adata.raw is None; use `layer=` or adata.X.")
        return adata.raw.X, adata.raw.var_names, "raw"
    if layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"Layer {layer!r} not found; available layers: {list(adata.layers)}.")
        return adata.layers[layer], adata.var_names, f"layers[{layer!r}]"
    return adata.X, adata.var_names, "X"
