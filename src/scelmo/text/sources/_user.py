"""Gene texts the user brings (a dict or a pandas Series), passed through unchanged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

__all__ = ["user_descriptions"]


def user_descriptions(
    genes: Sequence[str], texts: Mapping[str, Any] | pd.Series, *, progress: bool = False
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Look genes up in user-provided texts.

    Parameters
    ----------
    genes
        Gene symbols, unique.
    texts
        ``gene -> text``; missing values (``None``, NaN, empty or blank strings) count as no text.
    progress
        Unused; accepted for a uniform interface.

    Returns
    -------
    texts
        ``gene -> text`` (``None`` for genes without one).
    provenance
        ``{"n_user_texts": ...}``.

    Examples
    --------
    >>> from scelmo.text.sources import user_descriptions
    >>> user_descriptions(["CD3E", "CD4"], {"CD3E": "T-cell receptor subunit."})[0]
    {'CD3E': 'T-cell receptor subunit.', 'CD4': None}
    """
    del progress
    if isinstance(texts, pd.Series):
        if texts.index.has_duplicates:
            dupes = texts.index[texts.index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"The texts Series has duplicated genes {dupes}; keep one text per gene.")
        texts = texts.to_dict()
    out: dict[str, str | None] = {}
    for gene in dict.fromkeys(genes):
        value = texts.get(gene)
        if value is None or (isinstance(value, float) and pd.isna(value)):
            out[gene] = None
        elif not isinstance(value, str):
            raise TypeError(f"The text for gene {gene!r} is a {type(value).__name__}, not a str.")
        else:
            out[gene] = value if value.strip() else None
    return out, {"n_user_texts": len(texts)}
