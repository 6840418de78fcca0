"""``pp.build_gene_embeddings``: gene text -> text encoder -> a :class:`~scelmo.GeneEmbeddings` table."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from scelmo._logging import logger
from scelmo.gene_embeddings import GeneEmbeddings
from scelmo.text._cache import TextCache, resolve_cache
from scelmo.text.encoders import CachedEncoder, TextEncoder, get_encoder

from ._gene_descriptions import describe_genes, warn_missing


def _texts_sha256(genes: list[str], texts: list[str]) -> str:
    digest = hashlib.sha256()
    for gene, text in zip(genes, texts, strict=True):
        digest.update(f"{gene}\t{text}\n".encode())
    return digest.hexdigest()


def build_gene_embeddings(
    genes: Iterable[str] | pd.Index,
    *,
    source: str | Mapping[str, Any] | pd.Series = "offline",
    encoder: str | os.PathLike | TextEncoder = "local",
    cache: bool | str | os.PathLike | TextCache = True,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    encoder_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
    **source_kwargs: Any,
) -> GeneEmbeddings:
    """Build a gene embedding table the scELMo / GenePT way: describe each gene, embed the text.

    Parameters
    ----------
    genes
        Gene symbols, for example ``adata.var_names``; duplicates are embedded once.
    source
        Where gene text comes from: ``"offline"`` (default, no network), ``"ncbi"`` (GenePT),
        ``"llm"`` (scELMo) or a dict / Series of your own texts; see
        :func:`scelmo.pp.gene_descriptions`.
    encoder
        ``"local"`` (bundled all-MiniLM-L6-v2, offline), ``"openai"`` (``text-embedding-ada-002``
        as in the papers), ``"openai:<model>"``, a model folder, or a
        :class:`~scelmo.text.TextEncoder`; see :func:`scelmo.text.get_encoder`.
    cache
        Keep service answers and vectors on disk (``True``: in ``cache_dir``, default
        ``data_dir()/cache``; ``False``: off; or a path or :class:`~scelmo.text.TextCache`).
        Every finished batch is stored, so an interrupted run resumes where it stopped and a
        rerun makes no requests.
    cache_dir
        Folder of the cache when ``cache=True``.
    batch_size
        Texts per encoder batch (default: the encoder's own).
    encoder_kwargs
        Options for the encoder class (``device=``, ``api_key=``, ``max_concurrency=``, ...).
    progress
        Show progress bars.
    **source_kwargs
        Options of the text source, for example ``model=`` and ``prompt=`` for ``"llm"``.

    Returns
    -------
    A :class:`~scelmo.GeneEmbeddings` with one row per gene that has text. Genes without
    text are left out, listed in ``provenance["genes_without_text"]`` and reported in a
    warning. The provenance also records ``text_source``, ``encoder``, ``model``, ``dim``,
    ``created`` (ISO date), ``n_genes_requested``, ``texts_sha256`` (over the gene texts),
    and the settings of the source (``source_params``) and encoder (``encoder_params``),
    never API keys.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.pp.build_gene_embeddings(adata.var_names)  # doctest: +SKIP
    >>> table.provenance["model"]  # doctest: +SKIP
    'sentence-transformers/all-MiniLM-L6-v2'
    >>> genept_like = se.pp.build_gene_embeddings(adata.var_names, source="ncbi", encoder="openai")  # doctest: +SKIP
    """
    kwargs = dict(encoder_kwargs or {})
    if batch_size is not None:
        if isinstance(encoder, TextEncoder):
            raise TypeError("batch_size= cannot change an encoder instance; set batch_size when creating it.")
        kwargs["batch_size"] = batch_size
    text_encoder = get_encoder(encoder, **kwargs)
    store = resolve_cache(cache, cache_dir)
    descriptions = describe_genes(
        genes, source=source, cache=store if store is not None else False, progress=progress, **source_kwargs
    )
    warn_missing(
        descriptions,
        stacklevel=2,
        outcome="they are left out of the table and listed in provenance['genes_without_text']",
    )
    described = descriptions[~descriptions.index.duplicated()].dropna()
    gene_list = [str(g) for g in described.index]
    texts = [str(t) for t in described.to_numpy()]
    if store is not None:
        text_encoder = CachedEncoder(text_encoder, cache=store)
    if not texts:
        raise ValueError(
            f"None of the {descriptions.index.nunique()} genes has text from source "
            f"{descriptions.attrs['provenance']['text_source']!r}, so there is nothing to embed. "
            "Check that the genes are HGNC symbols (or try another source)."
        )
    vectors = text_encoder.encode(texts, progress=progress)
    source_params = dict(descriptions.attrs["provenance"])
    text_source = source_params.pop("text_source")
    encoder_params = text_encoder.params()
    provenance = {
        "text_source": text_source,
        "encoder": encoder_params.pop("encoder"),
        "model": encoder_params.pop("model"),
        "dim": int(vectors.shape[1]),
        "created": _dt.date.today().isoformat(),
        "n_genes_requested": int(descriptions.index.nunique()),
        "genes_without_text": list(descriptions.attrs["missing"]),
        "texts_sha256": _texts_sha256(gene_list, texts),
        "source_params": source_params,
        "encoder_params": encoder_params,
    }
    table = GeneEmbeddings(gene_list, vectors, provenance=provenance)
    logger.info(
        "built a gene table: %d genes x %d dims (%s text, %s %s)",
        len(gene_list),
        vectors.shape[1],
        text_source,
        provenance["encoder"],
        provenance["model"],
    )
    return table
