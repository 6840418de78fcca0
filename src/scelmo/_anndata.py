"""AnnData plumbing shared by the tools: the expression matrix scanpy-style, values ``uns`` can store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
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


def h5ad_safe(value: Any) -> Any:
    """A copy of ``value`` that ``write_h5ad`` can store in ``uns`` (``None`` dropped, tuples as lists).

    Examples
    --------
    >>> from scelmo._anndata import h5ad_safe
    >>> h5ad_safe({"a": None, "b": (1, 2), "c": {"d": None, "e": "x"}})
    {'b': [1, 2], 'c': {'e': 'x'}}
    """
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        items = [h5ad_safe(v) for v in value if v is not None]
        if items and all(isinstance(v, Mapping) for v in items):
            return {str(i): v for i, v in enumerate(items)}
        if items and not all(isinstance(v, str | int | float | bool | np.number) for v in items):
            return [str(v) for v in items]
        return list(items)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [str(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_key(key: Any, what: str = "key_added") -> str:
    """Refuse a key that AnnData stores but cannot read back from ``.h5ad``/``.zarr``; return it.

    A key names a group or dataset in the file: it must be a non-empty string without ``/``
    (a path separator in HDF5 and zarr) or NUL characters, and not ``"."`` or ``".."``.
    Call it at the top of every function that writes under a user-given key, before any work.

    Parameters
    ----------
    key
        The key to check.
    what
        The argument's name, for the message (``"key_added"``, ``"--key-added"``...).

    Returns
    -------
    ``key``, unchanged.

    Examples
    --------
    >>> from scelmo._anndata import check_key
    >>> check_key("X_elmo")
    'X_elmo'
    >>> check_key("a/b")
    Traceback (most recent call last):
    ...
    ValueError: key_added='a/b' cannot be stored in an .h5ad or .zarr file: it contains '/'. Use letters, digits, '_', '-' or '.', e.g. key_added='a_b'.
    """
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a string, got {type(key).__name__} ({key!r}).")
    problem = None
    if not key.strip():
        problem = "it is empty" if not key else "it is only whitespace"
    elif "/" in key:
        problem = "it contains '/'"
    elif "\x00" in key:
        problem = "it contains a NUL character"
    elif key in (".", ".."):
        problem = f"{key!r} names a folder, not an entry"
    if problem is None:
        return key
    suggestion = key.replace("/", "_").replace("\x00", "").strip(". ")
    hint = f", e.g. {what}={suggestion!r}" if suggestion else ""
    raise ValueError(
        f"{what}={key!r} cannot be stored in an .h5ad or .zarr file: {problem}. "
        f"Use letters, digits, '_', '-' or '.'{hint}."
    )
