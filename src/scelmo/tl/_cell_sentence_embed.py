"""``tl.cell_sentence_embed``: GenePT-s, each cell's top gene symbols embedded as one text."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo._anndata import check_key, expression_matrix
from scelmo._logging import logger
from scelmo._records import h5ad_safe
from scelmo.cell_sentences import DEFAULT_N_GENES, iter_cell_sentences, sentence_symbols
from scelmo.text._cache import TextCache, resolve_cache
from scelmo.text._progress import progress_bar
from scelmo.text.encoders import CachedEncoder, TextEncoder, get_encoder

from ._inplace import target

#: Cells whose sentences are built and sent to the encoder together; every finished encoder
#: batch inside is stored in the cache at once, so this only bounds memory.
_CELLS_PER_ROUND = 4096


def cell_sentence_embed(
    adata: AnnData,
    *,
    encoder: str | os.PathLike | TextEncoder = "local",
    n_genes: int = DEFAULT_N_GENES,
    layer: str | None = None,
    use_raw: bool | None = None,
    cache: bool | str | os.PathLike | TextCache = True,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    encoder_kwargs: dict[str, Any] | None = None,
    chunk_size: int = _CELLS_PER_ROUND,
    progress: bool = True,
    key_added: str = "X_genept_s",
    copy: bool = False,
) -> AnnData | None:
    """Embed each cell as the text of its most expressed gene symbols (GenePT-s).

    A cell becomes the sentence of its ``n_genes`` most expressed gene symbols, highest first,
    joined by spaces (the text Cell2Sentence also uses), and the sentence is embedded by a
    text encoder. Zeros are never in a sentence, ties keep the order of ``var_names``, Ensembl
    ids are written as their HGNC symbols; see :mod:`scelmo.cell_sentences` for the exact
    rule. Sentences are embedded through the package's text cache: every finished batch is
    stored, so an interrupted run resumes where it stopped, a rerun encodes nothing, and cells
    with the same sentence are encoded once.

    Parameters
    ----------
    adata
        Annotated data matrix (cells x genes) with gene symbols or Ensembl ids as names.
        Counts and log-normalised values give the same sentences (ranks within a cell).
    encoder
        ``"local"`` (default: the bundled all-MiniLM-L6-v2, offline, 384-d), ``"openai"``
        (``text-embedding-ada-002``, GenePT's model), ``"openai:<model>"``, a model folder, or a
        :class:`~scelmo.text.TextEncoder`; see :func:`scelmo.text.get_encoder`.
    n_genes
        Symbols per sentence at most. Encoders truncate long texts: all-MiniLM-L6-v2 reads
        256 word pieces, and a gene symbol takes about 3.3, so the default (60) fits every
        cell of the evaluation data; words past the encoder's limit are silently dropped by
        the encoder (the least expressed genes of the sentence).
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    use_raw
        Use ``adata.raw``; ``None`` means: when ``adata.raw`` exists and no ``layer`` is given
        (scanpy's convention).
    cache
        Keep vectors on disk (``True``: in ``cache_dir``, default ``data_dir()/cache``;
        ``False``: off; or a path or :class:`~scelmo.text.TextCache`).
    cache_dir
        Folder of the cache when ``cache=True``.
    batch_size
        Sentences per encoder batch (default: the encoder's own).
    encoder_kwargs
        Options for the encoder class (``device=``, ``api_key=``, ...).
    chunk_size
        Cells whose sentences are built at a time (memory only; results do not depend on it).
    progress
        Show a progress bar over cells.
    key_added
        Embeddings go to ``adata.obsm[key_added]``, parameters to ``adata.uns[key_added]``.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; sets

    ``adata.obsm[key_added]``
        float32 array ``(n_obs, dim)``: the encoder's vector of each cell's sentence. Cells
        with no expressed gene get zeros and a warning.
    ``adata.uns[key_added]``
        ``params`` (encoder, model, n_genes, matrix, encoder settings), ``genes`` (id type,
        genes without a symbol and examples), ``n_empty_cells``, ``n_unique_sentences``,
        ``n_encoded`` (sentences newly encoded, the rest came from the cache) and
        ``mean_genes_per_cell``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> se.tl.cell_sentence_embed(adata, n_genes=30)  # doctest: +SKIP
    >>> adata.obsm["X_genept_s"].shape  # doctest: +SKIP
    (700, 384)
    """
    check_key(key_added)
    kwargs = _encoder_kwargs(encoder, encoder_kwargs, batch_size)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    text_encoder = get_encoder(encoder, **kwargs)
    store = resolve_cache(cache, cache_dir)
    if store is not None:
        text_encoder = CachedEncoder(text_encoder, cache=store)
    adata = target(adata, copy)
    expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    source = expression.source
    words, genes_report = _symbols(expression.var_names, source)
    cells = _CellSentences(expression.matrix.shape[0])
    with progress_bar(
        total=cells.n_obs, desc="Embedding cell sentences", enabled=progress, unit="cell"
    ) as bar:
        for start, stop, sentences in iter_cell_sentences(
            expression.matrix, words, n_genes=n_genes, chunk_size=chunk_size
        ):
            cells.add(start, stop, sentences, text_encoder, cached=store is not None, bar=bar)
    if cells.embedding is None:
        raise ValueError(
            f"No cell of {source} has an expressed gene with a symbol, so there is nothing to embed."
        )
    n_empty = int(cells.empty.sum())
    if n_empty:
        warnings.warn(
            f"{n_empty} cells have no expressed gene with a symbol; their {key_added} rows are zeros.",
            UserWarning,
            stacklevel=2,
        )
    adata.obsm[key_added] = cells.embedding
    adata.uns[key_added] = h5ad_safe(
        {
            "params": _params(text_encoder, n_genes=n_genes, layer=layer, source=source),
            "genes": genes_report,
            "n_empty_cells": n_empty,
            "n_unique_sentences": len(cells.unique),
            "n_encoded": int(cells.n_encoded),
            "mean_genes_per_cell": float(cells.n_words / max(cells.n_obs - n_empty, 1)),
        }
    )
    logger.info(
        "added obsm[%r] (%d x %d, %d genes per sentence, %d sentences encoded, %d from the cache) "
        "and uns[%r]",
        key_added,
        *cells.embedding.shape,
        n_genes,
        cells.n_encoded,
        len(cells.unique) - cells.n_encoded,
        key_added,
    )
    return adata if copy else None


def _symbols(var_names: pd.Index, source: str) -> tuple[np.ndarray, dict[str, Any]]:
    """The word of each gene in a sentence and the report on genes without one; refuses data with none."""
    words, genes_report = sentence_symbols(var_names)
    if genes_report["n_without_symbol"] == genes_report["n_genes"]:
        raise ValueError(
            f"None of the {genes_report['n_genes']} genes of {source} has a symbol "
            f"(e.g. {genes_report['without_symbol_examples'][:3]}); cell sentences need human gene "
            "symbols or human Ensembl ids as var_names (for mouse data see scelmo.pp.map_orthologs)."
        )
    return words, genes_report


def _encoder_kwargs(
    encoder: str | os.PathLike | TextEncoder, encoder_kwargs: dict[str, Any] | None, batch_size: int | None
) -> dict[str, Any]:
    """The options of the encoder class, ``batch_size`` among them when given."""
    kwargs = dict(encoder_kwargs or {})
    if batch_size is not None:
        if isinstance(encoder, TextEncoder):
            raise TypeError("batch_size= cannot change an encoder instance; set batch_size when creating it.")
        kwargs["batch_size"] = batch_size
    return kwargs


def _params(text_encoder: TextEncoder, *, n_genes: int, layer: str | None, source: str) -> dict[str, Any]:
    """``uns[key_added]['params']``: the method, the encoder and its settings, the matrix read."""
    encoder_params = text_encoder.params()
    return {
        "method": "GenePT-s (cell sentences)",
        "encoder": encoder_params.pop("encoder"),
        "model": encoder_params.pop("model"),
        "n_genes": int(n_genes),
        "layer": layer,
        "use_raw": source == "raw",
        "matrix": source,
        "encoder_params": encoder_params,
    }


class _CellSentences:
    """The embedding of every cell, filled block by block, and the counts reported in ``uns``."""

    def __init__(self, n_obs: int) -> None:
        self.n_obs = n_obs
        self.embedding: np.ndarray | None = None
        self.empty = np.zeros(n_obs, dtype=bool)
        self.n_words = 0
        self.unique: set[str] = set()
        self.n_encoded = 0

    def add(
        self, start: int, stop: int, sentences: list[str], encoder: TextEncoder, *, cached: bool, bar: Any
    ) -> None:
        """Embed the sentences of cells ``start:stop``; a cell's progress ticks when it is done."""
        texts = np.array(sentences, dtype=object)
        filled = texts != ""
        self.empty[start:stop] = ~filled
        self.n_words += sum(s.count(" ") + 1 for s in sentences if s)
        self.unique.update(texts[filled])
        rows = np.flatnonzero(filled)
        bar.update(int((~filled).sum()))
        if not len(rows):
            return
        # Identical sentences (frequent for short sentences or sparse data) are encoded once.
        distinct, inverse = np.unique(texts[rows].astype(str), return_inverse=True)
        cells_per_text = np.bincount(inverse, minlength=len(distinct))
        vectors_of: np.ndarray | None = None
        for positions, vectors in encoder.encode_batches(distinct.tolist(), progress=False):
            if vectors_of is None:
                vectors_of = np.empty((len(distinct), vectors.shape[1]), dtype=np.float32)
            vectors_of[positions] = vectors
            bar.update(int(cells_per_text[positions].sum()))
        if vectors_of is None:
            raise RuntimeError(f"{encoder!r} returned no vectors for {len(distinct)} sentences.")
        if self.embedding is None:
            self.embedding = np.zeros((self.n_obs, vectors_of.shape[1]), dtype=np.float32)
        self.embedding[start + rows] = vectors_of[inverse]
        # With a cache, only its misses were encoded.
        self.n_encoded += (
            encoder.last_stats.get("encoded", 0)
            if cached and isinstance(encoder, CachedEncoder)
            else len(distinct)
        )
