"""``tl.score_text``: one score per cell for each free-text query."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from anndata import AnnData

from scelmo._anndata import check_key, expression_matrix
from scelmo._logging import logger
from scelmo.annotation._elmo_refine import top_genes
from scelmo.annotation._elmo_text import class_vectors, resolve_encoder
from scelmo.annotation._standardised import Standardised
from scelmo.gene_embeddings import GeneEmbeddings

Method = Literal["elmo", "genept_s", "langcell"]
_DEFAULT_REP = {"genept_s": "X_genept_s", "langcell": "X_langcell"}


def _named_queries(queries: str | Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    """Column suffix -> query text; suffixes are the mapping's keys or the texts made storable."""
    if isinstance(queries, str):
        queries = [queries]
    if isinstance(queries, Mapping):
        named = {str(name): str(text) for name, text in queries.items()}
    else:
        named = {re.sub(r"[/\0]", "_", str(text)).strip(): str(text) for text in queries}
    if not named or any(not text.strip() for text in named.values()):
        raise ValueError("`queries` must be one or more non-empty texts.")
    return named


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _elmo_scores(
    adata: AnnData,
    texts: list[str],
    table: GeneEmbeddings | None,
    *,
    encoder: Any,
    n_genes: int,
    layer: str | None,
    use_raw: bool | None,
    cache: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    if not isinstance(table, GeneEmbeddings):
        raise ValueError(
            "method='elmo' needs gene_embeddings=, the gene table (its encoder embeds the queries)."
        )
    provenance = {**table.provenance, "content_hash": table.content_hash}
    encoder = resolve_encoder(provenance, encoder)
    vectors = class_vectors(encoder, {t: [t] for t in texts}, texts, cache=cache)
    expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    var_names = expression.var_names
    aligned = table.align(var_names, min_coverage=0.0)
    similarity = _unit_rows(aligned.matrix) @ vectors.T
    standardised = Standardised(expression.matrix)
    # Only genes with text that vary over the cells can say anything about a cell.
    allowed = aligned.matched & standardised.varies
    weights = top_genes(similarity, n_genes, allowed=allowed)
    names = np.asarray(var_names)
    genes = {}
    for k, text in enumerate(texts):
        chosen = np.flatnonzero(weights[:, k] > 0)
        genes[text] = names[chosen[np.argsort(-similarity[chosen, k], kind="stable")]].tolist()
    info = {
        "matrix": expression.source,
        "genes": genes,
        "gene_table": table.content_hash,
        "encoder": encoder.params(),
    }
    return standardised.times(weights), info


def _embedding_scores(
    adata: AnnData, texts: list[str], method: str, use_rep: str, *, encoder: Any, model: Any, cache: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    if use_rep not in adata.obsm:
        maker = "tl.cell_sentence_embed" if method == "genept_s" else "tl.langcell_encode"
        raise KeyError(f"adata.obsm[{use_rep!r}] not found: run scelmo.{maker} first, or pass use_rep=.")
    cells = _unit_rows(adata.obsm[use_rep])
    if method == "genept_s":
        record = adata.uns.get(use_rep, {}).get("params", {})
        if not record.get("model"):
            raise ValueError(f"adata.uns[{use_rep!r}] does not say which encoder made obsm[{use_rep!r}].")
        encoder = resolve_encoder({"encoder": record.get("encoder"), "model": record["model"]}, encoder)
        vectors = class_vectors(encoder, {t: [t] for t in texts}, texts, cache=cache)
        return cells @ vectors.T, {"use_rep": use_rep, "encoder": encoder.params()}
    if model is None:
        raise ValueError("method='langcell' needs model= (the LangCell model that wrote obsm[use_rep]).")
    import torch

    with torch.inference_mode():
        vectors = model.encode_texts(texts).float().cpu().numpy()
    if vectors.shape[1] != cells.shape[1]:
        raise ValueError(
            f"obsm[{use_rep!r}] is {cells.shape[1]}-d but the model's texts are {vectors.shape[1]}-d."
        )
    return cells @ vectors.T, {"use_rep": use_rep, "checkpoint_hash": getattr(model, "checkpoint_hash", None)}


def score_text(
    adata: AnnData,
    queries: str | Sequence[str] | Mapping[str, str],
    *,
    method: Method = "elmo",
    gene_embeddings: GeneEmbeddings | None = None,
    encoder: Any = None,
    model: Any = None,
    use_rep: str | None = None,
    n_genes: int = 20,
    layer: str | None = None,
    use_raw: bool | None = None,
    cache: bool | str | os.PathLike = True,
    key_added: str = "text_score",
    copy: bool = False,
) -> AnnData | None:
    """Score every cell against free-text queries ("interferon-stimulated monocytes", "cycling T cells").

    ``method="elmo"``: the query is embedded by the gene table's text encoder (as zero-shot
    class texts are); its ``n_genes`` genes with the most similar text (cosine of table rows
    to the query, among genes that vary over the cells) form a signature, and a cell's score is
    the mean standardised expression (per-gene z-score) of those genes, like
    :func:`scanpy.tl.score_genes` with genes chosen by text. ``method="genept_s"``: cosine of the
    cell-sentence embedding (``obsm['X_genept_s']``, :func:`scelmo.tl.cell_sentence_embed`) to
    the query embedded by the same encoder. ``method="langcell"``: cosine of LangCell's cell
    embedding (``obsm['X_langcell']``, :func:`scelmo.tl.langcell_encode`) to the query's
    LangCell text embedding, the model's own cell-text similarity (without CTM).

    Parameters
    ----------
    adata
        Annotated data matrix (log-normalised expression for ``"elmo"``).
    queries
        One text, several, or a dict ``name -> text`` (the names become the column suffixes).
    method
        ``"elmo"``, ``"genept_s"`` or ``"langcell"``.
    gene_embeddings
        The gene table (``"elmo"``).
    encoder
        Text encoder for the queries (default: the one recorded with the gene table or the cell
        sentences, recreated from its provenance); it must be that encoder.
    model
        A :class:`scelmo.models.LangCell` with its text tokenizer (``"langcell"``).
    use_rep
        Cell embeddings for ``"genept_s"`` / ``"langcell"`` (default ``X_genept_s`` / ``X_langcell``).
    n_genes
        Signature genes per query (``"elmo"``).
    layer, use_raw
        Expression matrix for ``"elmo"`` (scanpy's rule by default: ``raw`` when present).
    cache
        Keep query vectors on disk (see :func:`scelmo.pp.build_gene_embeddings`).
    key_added
        Prefix of the columns written.
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; sets

    ``adata.obs[key_added + '_' + name]``
        The score of each query (higher: the cell fits the text better). Scores compare cells
        for one query; across queries they are on different scales.
    ``adata.uns[key_added]``
        ``method``, ``queries`` (column -> text), ``params``, and the signature ``genes`` of
        each query (``"elmo"``).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.pp.build_gene_embeddings(adata.raw.var_names, progress=False)  # doctest: +SKIP
    >>> se.tl.score_text(adata, ["cytotoxic natural killer cells"], gene_embeddings=table)  # doctest: +SKIP
    >>> adata.obs.groupby("bulk_labels")["text_score_cytotoxic natural killer cells"].mean()  # doctest: +SKIP
    """
    check_key(key_added)
    if method not in ("elmo", "genept_s", "langcell"):
        raise ValueError(f"`method` must be 'elmo', 'genept_s' or 'langcell', got {method!r}.")
    if n_genes < 1:
        raise ValueError(f"`n_genes` must be at least 1, got {n_genes}.")
    named = _named_queries(queries)
    columns = {f"{key_added}_{name}": text for name, text in named.items()}
    for column in columns:
        check_key(column, "the column of a query")
    if copy:
        adata = adata.copy()
    texts = list(named.values())
    if method == "elmo":
        scores, info = _elmo_scores(
            adata,
            texts,
            gene_embeddings,
            encoder=encoder,
            n_genes=n_genes,
            layer=layer,
            use_raw=use_raw,
            cache=cache,
        )
    else:
        rep = use_rep or _DEFAULT_REP[method]
        scores, info = _embedding_scores(adata, texts, method, rep, encoder=encoder, model=model, cache=cache)
    for k, column in enumerate(columns):
        adata.obs[column] = scores[:, k].astype(np.float32)
    adata.uns[key_added] = {
        "method": method,
        "queries": columns,
        "params": {
            "n_genes": n_genes if method == "elmo" else None,
            **{k: v for k, v in info.items() if k != "genes"},
        },
        **({"genes": info["genes"]} if "genes" in info else {}),
    }
    logger.info(
        "added %d obs columns %s... and uns[%r] (text scores, %s)",
        len(columns),
        next(iter(columns)),
        key_added,
        method,
    )
    return adata if copy else None
