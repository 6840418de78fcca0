"""``pp.gene_descriptions``: one text per gene, from NCBI, a chat model, offline tables or the user."""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from scelmo._logging import logger
from scelmo.text._cache import TextCache, resolve_cache
from scelmo.text.sources import CACHED_SOURCES, SOURCES, user_descriptions


def _gene_list(genes: Iterable[str] | pd.Index | str) -> list[str]:
    if isinstance(genes, str):
        raise TypeError("genes must be a list of symbols; wrap a single gene in a list: ['CD3E'].")
    out = list(genes)
    bad = [g for g in out if not isinstance(g, str) or not g]
    if bad:
        raise TypeError(f"genes must be non-empty strings; got {bad[:5]!r}.")
    return out


def _source_name(source: str | Mapping[str, Any] | pd.Series) -> str:
    return source if isinstance(source, str) else "user"


def gene_descriptions(
    genes: Iterable[str] | pd.Index,
    *,
    source: str | Mapping[str, Any] | pd.Series = "offline",
    cache: bool | str | os.PathLike | TextCache = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **source_kwargs: Any,
) -> pd.Series:
    """Describe each gene in text: the input of scELMo / GenePT gene embeddings.

    Parameters
    ----------
    genes
        Gene symbols (for example ``adata.var_names``). The result keeps their order;
        duplicates are looked up once.
    source
        - ``"offline"`` (default, no network): ``"GENE (HGNC approved name). Also known as:
          aliases. Biological process: ... Molecular function: ..."``, with Gene Ontology
          terms when ``org.Hs.eg.sqlite`` and ``GO.sqlite`` are found
          (:func:`scelmo.text.sources.offline_descriptions`; options ``go_annotations``,
          ``max_go_terms``).
        - ``"ncbi"``: NCBI gene summaries from mygene.info, GenePT's text
          (:func:`scelmo.text.sources.ncbi_descriptions`; options ``url``, ``species``,
          ``scopes``, ``batch_size``, ``request_delay``, retries).
        - ``"llm"``: a chat model answers scELMo's prompt for each gene
          (:func:`scelmo.text.sources.llm_descriptions`; options ``prompt``, ``model``,
          ``temperature``, ``api_key``, ``base_url``, ``max_concurrency``, retries).
        - a dict or Series ``gene -> text``: your own texts, passed through.
    cache
        Keep service answers on disk (``"ncbi"`` and ``"llm"``), keyed by source, model or
        prompt, and gene, so that reruns send no requests and interrupted runs resume.
        ``True``: in ``cache_dir`` (default ``data_dir()/cache``); ``False``: off; or a path
        or :class:`~scelmo.text.TextCache`.
    cache_dir
        Folder of the cache when ``cache=True``.
    progress
        Show a progress bar.
    **source_kwargs
        Options of the chosen source (see above).

    Returns
    -------
    A :class:`pandas.Series` indexed by ``genes`` (same order), named ``"description"``, with
    the text or NaN. ``series.attrs["missing"]`` lists the genes without text (also reported
    in a warning) and ``series.attrs["provenance"]`` records how the texts were made.

    Examples
    --------
    >>> import scelmo as se
    >>> texts = se.pp.gene_descriptions(["CD3E", "MS4A1"])  # doctest: +SKIP
    >>> texts["CD3E"]  # doctest: +SKIP
    'CD3E (CD3e molecule). Biological process: ...'
    >>> own = se.pp.gene_descriptions(["CD3E", "XYZ"], source={"CD3E": "T-cell receptor subunit."})  # doctest: +SKIP
    >>> own.attrs["missing"]  # doctest: +SKIP
    ['XYZ']
    """
    series = describe_genes(
        genes, source=source, cache=cache, cache_dir=cache_dir, progress=progress, **source_kwargs
    )
    warn_missing(series, stacklevel=2)
    return series


def describe_genes(
    genes: Iterable[str] | pd.Index,
    *,
    source: str | Mapping[str, Any] | pd.Series = "offline",
    cache: bool | str | os.PathLike | TextCache = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **source_kwargs: Any,
) -> pd.Series:
    """:func:`gene_descriptions` without the warning about genes without text (callers warn)."""
    gene_list = _gene_list(genes)
    unique = list(dict.fromkeys(gene_list))
    name = _source_name(source)
    if isinstance(source, Mapping | pd.Series):
        if source_kwargs:
            raise TypeError(f"User texts take no options; got {sorted(source_kwargs)}.")
        texts, provenance = user_descriptions(unique, source)
    elif source in SOURCES:
        function = SOURCES[source]
        accepted = set(inspect.signature(function).parameters) - {"genes", "cache", "progress"}
        unknown = sorted(set(source_kwargs) - accepted)
        if unknown:
            raise TypeError(
                f"gene_descriptions(source={source!r}) got unknown options {unknown}; it accepts {sorted(accepted)}."
            )
        kwargs = dict(source_kwargs)
        if source in CACHED_SOURCES:
            kwargs["cache"] = resolve_cache(cache, cache_dir)
        texts, provenance = function(unique, progress=progress, **kwargs)
    else:
        raise ValueError(
            f"Unknown text source {source!r}: use 'offline', 'ncbi', 'llm', or a dict / Series of texts."
        )
    values = [texts.get(gene) for gene in gene_list]
    series = pd.Series(
        [np.nan if v is None else v for v in values],
        index=pd.Index(gene_list, name="gene"),
        name="description",
        dtype=object,
    )
    missing = [g for g in unique if texts.get(g) is None]
    series.attrs["missing"] = missing
    series.attrs["provenance"] = {"text_source": name, **provenance}
    logger.info(
        "gene_descriptions: %d of %d genes described (source %r)",
        len(unique) - len(missing),
        len(unique),
        name,
    )
    return series


def warn_missing(
    series: pd.Series,
    *,
    stacklevel: int,
    outcome: str = "they are NaN in the result and listed in .attrs['missing']",
) -> None:
    """Warn about the genes listed in ``series.attrs["missing"]``; ``stacklevel`` counts from our caller."""
    missing = series.attrs.get("missing", [])
    if not missing:
        return
    name = series.attrs.get("provenance", {}).get("text_source", "?")
    n_unique = series.index.nunique()
    examples = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    warnings.warn(
        f"{len(missing)} of {n_unique} genes have no text from source {name!r} (e.g. {examples}); {outcome}.",
        UserWarning,
        stacklevel=stacklevel + 1,
    )
