"""``tl.elmo_embed``: scELMo / GenePT cell embeddings written into an AnnData."""

from __future__ import annotations

from typing import Literal

from anndata import AnnData

from scelmo._anndata import check_key, expression_matrix
from scelmo._logging import logger
from scelmo._products import Backend
from scelmo._records import ElmoRecord
from scelmo.cell_embedding import DEFAULT_CHUNK_SIZE, weighted_gene_average
from scelmo.gene_embeddings import GeneEmbeddings

from ._inplace import target


def elmo_embed(
    adata: AnnData,
    gene_embeddings: GeneEmbeddings,
    *,
    mode: Literal["wa", "aa"] = "wa",
    layer: str | None = None,
    use_raw: bool | None = None,
    renormalize: bool = False,
    key_added: str = "X_elmo",
    id_type: Literal["auto", "symbol", "ensembl"] = "auto",
    case_sensitive: bool = True,
    min_coverage: float = 0.5,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: Backend = "auto",
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Embed cells as expression-weighted averages of gene text embeddings (scELMo / GenePT).

    ``wa`` (scELMo's main variant) gives each cell ``(x / x.sum()) @ E``; ``aa`` (GenePT-w)
    gives ``x @ E / G``, where ``E`` is the gene table aligned to the genes of the matrix
    (zero rows for genes without an embedding) and ``G`` the number of genes. The matrix is
    read in blocks of cells and never densified: dense, CSR/CSC, backed
    (``read_h5ad(..., backed="r")``) and dask arrays all work, in float32.

    Parameters
    ----------
    adata
        Annotated data matrix (cells x genes), log-normalised expression in most analyses
        (raw counts for proteins).
    gene_embeddings
        The gene table, e.g. from :func:`scelmo.pp.build_gene_embeddings` or
        :meth:`scelmo.GeneEmbeddings.load`.
    mode
        ``"wa"`` (weighted average) or ``"aa"`` (arithmetic average, GenePT-w).
    layer
        Use ``adata.layers[layer]`` instead of ``X``.
    use_raw
        Use ``adata.raw``; ``None`` means: when ``adata.raw`` exists and no ``layer`` is given
        (scanpy's convention).
    renormalize
        ``wa`` only: weights sum to one over genes that have an embedding, instead of over
        all genes as in the paper (where unmatched genes dilute the average).
    key_added
        Embeddings go to ``adata.obsm[key_added]``, parameters to ``adata.uns[key_added]``.
    id_type, case_sensitive, min_coverage
        How genes are matched to the table; see :meth:`scelmo.GeneEmbeddings.align`.
    chunk_size
        Cells per block (memory is the output plus one block).
    backend
        Product kernel for sparse matrices: ``"auto"`` (numba, which comes with scanpy; else
        torch when installed; else BLAS on densified small blocks or scipy), ``"numba"`` (our
        CSR kernel over cache-sized table tiles and gene blocks, compiled on first use and
        cached on disk), ``"torch"`` (torch's CSR kernel over 64-column table blocks),
        ``"numpy"``, ``"scipy"``. Dense matrices always use BLAS.
    progress
        Show a progress bar.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; sets

    ``adata.obsm[key_added]``
        float32 array ``(n_obs, dim)``. Cells with zero total expression get zeros and a
        warning (the originals give NaN).
    ``adata.uns[key_added]``
        ``params`` (mode, layer, use_raw, renormalize, backend), ``gene_table`` (its
        provenance and content hash), ``coverage`` (matched genes, unmatched examples) and
        ``n_empty_cells``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.pp.build_gene_embeddings(adata.raw.var_names, source="offline")  # doctest: +SKIP
    >>> se.tl.elmo_embed(adata, table)  # doctest: +SKIP
    >>> adata.obsm["X_elmo"].shape  # doctest: +SKIP
    (700, 384)
    """
    check_key(key_added)
    if not isinstance(gene_embeddings, GeneEmbeddings):
        raise TypeError(
            f"`gene_embeddings` must be a scelmo.GeneEmbeddings, got {type(gene_embeddings).__name__}; "
            "wrap a dict with GeneEmbeddings.from_dict(...)."
        )
    adata = target(adata, copy)
    expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    aligned = gene_embeddings.align(
        expression.var_names, id_type=id_type, case_sensitive=case_sensitive, min_coverage=min_coverage
    )
    embedding, stats = weighted_gene_average(
        expression.matrix,
        aligned.matrix,
        mode=mode,
        matched=aligned.matched,
        renormalize=renormalize,
        chunk_size=chunk_size,
        backend=backend,
        progress=progress,
        cell_names=adata.obs_names,
    )
    adata.obsm[key_added] = embedding
    ElmoRecord(
        params={
            "mode": mode,
            "layer": layer,
            "use_raw": expression.use_raw,
            "renormalize": renormalize,
            "backend": stats.backend,
            "matrix": expression.source,
        },
        gene_table=aligned.provenance,
        coverage=aligned.report(),
        n_empty_cells=stats.n_empty_cells,
    ).write(adata, key_added)
    logger.info(
        "added obsm[%r] (%d x %d, mode=%s, %s) and uns[%r]",
        key_added,
        *embedding.shape,
        mode,
        expression.source,
        key_added,
    )
    return adata if copy else None
