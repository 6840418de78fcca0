"""``tl.in_silico_knockout``: scELMo's in-silico treatment screen with a permutation null."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from .._anndata import check_key
from .._logging import logger
from ..gene_embeddings import GeneEmbeddings
from ..knockout import knockout_screen


def in_silico_knockout(
    model: Any,
    adata: AnnData,
    genes: Sequence[str] | Mapping[str, Sequence[str]],
    condition_key: str,
    *,
    control: str,
    disease: str | Sequence[str] | None = None,
    n_perm: int = 1000,
    n_bins: int = 20,
    alternative: Literal["greater", "less", "two-sided"] = "greater",
    seed: int = 0,
    layer: str | None = None,
    mode: Literal["wa", "aa"] = "wa",
    key_added: str | None = "in_silico_knockout",
) -> pd.DataFrame:
    """Rank genes by how much knocking them out moves disease cells toward controls.

    For each candidate gene, its expression is set to 0 in the disease cells, the cells are
    re-embedded with the gene table, and the change of the cosine similarity between the mean
    disease and mean control embeddings is the gene's ``shift`` (positive: toward control), as
    in scELMo's in-silico treatment. The re-embedding is exact and vectorised over genes (see
    :mod:`scelmo.knockout`). Our addition is a null distribution: the shifts of up to ``n_perm``
    random genes from the candidate's bin of mean expression (in the disease cells), giving
    ``p = (1 + #null >= shift) / (1 + n_null)`` and Benjamini-Hochberg ``p_adj``.

    Parameters
    ----------
    model
        A trained :class:`~scelmo.models.ElmoAdapter` (its adapted gene table, mode and
        expression layer are used; typically trained with ``labels_key=condition_key``), or a
        :class:`~scelmo.GeneEmbeddings` table for the zero-shot screen.
    adata
        Cells with disease and control cells; for an adapter, the model's genes in its order.
    genes
        Candidate genes, each knocked out alone, or a mapping ``set name -> genes`` of gene
        sets knocked out together (their null: random sets matched member by member).
    condition_key
        Column of ``adata.obs`` with the condition.
    control
        The control category.
    disease
        The disease category (or categories); default every cell that is not control.
    n_perm
        Null genes (or sets) per candidate.
    n_bins
        Quantile bins of mean expression for matching the null genes.
    alternative
        ``"greater"`` (default: moves toward control more than matched random genes), ``"less"``
        or ``"two-sided"``.
    seed
        Seed of the null draws.
    layer
        Expression layer for a :class:`~scelmo.GeneEmbeddings` table (an adapter uses its own).
    mode
        Cell embedding for a :class:`~scelmo.GeneEmbeddings` table (an adapter uses its own).
    key_added
        Store parameters and results in ``adata.uns[key_added]`` (``None``: do not).

    Returns
    -------
    A DataFrame indexed by gene (or gene set), ranked (``rank`` 1 first) by ``shift``, with
    ``p_value``, ``p_adj``, ``cosine_before``, ``cosine_after``, ``null_mean``, ``null_std``,
    ``n_null``, ``mean_expression`` and ``expression_bin``. With ``key_added``, also sets
    ``adata.uns[key_added]`` with ``params`` and ``results`` (the same DataFrame).

    Examples
    --------
    >>> import scelmo as se
    >>> se.models.ElmoAdapter.setup_anndata(adata, labels_key="condition", layer="log1p")  # doctest: +SKIP
    >>> model = se.models.ElmoAdapter(adata, gene_embeddings=table)  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> screen = se.tl.in_silico_knockout(model, adata, adata.var_names, "condition", control="healthy")  # doctest: +SKIP
    >>> screen.head()  # doctest: +SKIP
    """
    if key_added is not None:
        check_key(key_added)
    if condition_key not in adata.obs:
        raise KeyError(
            f"condition_key {condition_key!r} is not a column of adata.obs; available: {list(adata.obs.columns)}."
        )
    condition = adata.obs[condition_key].astype(str).to_numpy()
    if str(control) not in set(condition):
        raise ValueError(
            f"control {control!r} is not a category of obs[{condition_key!r}]: {sorted(set(condition))[:10]}."
        )
    control_mask = condition == str(control)
    if disease is None:
        disease_mask = ~control_mask
    else:
        wanted = {disease} if isinstance(disease, str) else set(map(str, disease))
        missing = wanted - set(condition)
        if missing:
            raise ValueError(f"disease categories {sorted(missing)} are not in obs[{condition_key!r}].")
        disease_mask = np.isin(condition, list(wanted))

    if isinstance(model, GeneEmbeddings):
        from ..models.elmo_adapter._data import check_expression, expression_matrix

        matrix = expression_matrix(adata, layer)
        check_expression(matrix, where="the expression matrix")
        aligned = model.align(adata.var_names)
        table, embedded, source, used_mode = aligned.matrix, aligned.matched, "gene_embeddings", mode
    elif hasattr(model, "adapted_gene_matrix"):
        matrix, _ = model._matrix(adata)
        table, embedded = model.adapted_gene_matrix()
        source, used_mode = type(model).__name__, model.module.mode
        if layer is not None:
            raise ValueError("`layer` applies to a GeneEmbeddings table; an adapter uses its own layer.")
    else:
        raise TypeError(
            f"`model` must be a trained scelmo.models.ElmoAdapter or a scelmo.GeneEmbeddings, got {type(model).__name__}."
        )

    result = knockout_screen(
        matrix,
        table,
        adata.var_names,
        disease_mask,
        control_mask,
        genes,
        mode=used_mode,
        embedded=embedded,
        n_perm=n_perm,
        n_bins=n_bins,
        alternative=alternative,
        seed=seed,
    )
    if key_added is not None:
        adata.uns[key_added] = {
            "params": {
                "condition_key": condition_key,
                "control": str(control),
                "disease": _labels(condition, disease_mask),
                "n_perm": n_perm,
                "n_bins": n_bins,
                "alternative": alternative,
                "seed": seed,
                "mode": used_mode,
                "table": source,
            },
            "results": result,
        }
    top = result.index[0] if len(result) else None
    logger.info(
        "in_silico_knockout: screened %d candidates (%d disease vs %d control cells); top %s%s",
        len(result),
        int(disease_mask.sum()),
        int(control_mask.sum()),
        top,
        f"; added uns[{key_added!r}]" if key_added else "",
    )
    return result


def _labels(condition: np.ndarray, mask: np.ndarray) -> list[str]:
    """The distinct condition labels of the masked cells."""
    return [str(v) for v in np.unique(condition[mask])]
