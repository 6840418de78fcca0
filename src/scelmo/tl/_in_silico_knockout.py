"""``tl.in_silico_knockout``: scELMo's in-silico treatment screen with a permutation null."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo._anndata import check_key, expression_matrix
from scelmo._checks import check_matrix
from scelmo._logging import logger
from scelmo.gene_embeddings import GeneEmbeddings
from scelmo.knockout import knockout_screen
from scelmo.models._scvi_inputs import check_same_genes

if TYPE_CHECKING:
    from scelmo.cell_embedding import Mode
    from scelmo.models import ElmoAdapter


def in_silico_knockout(
    model: ElmoAdapter | GeneEmbeddings,
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
    use_raw: bool = False,
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
        A trained :class:`~scelmo.models.ElmoAdapter` (its adapted gene table,
        :meth:`~scelmo.models.ElmoAdapter.get_adapted_gene_embeddings`, its mode and its
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
    use_raw
        Read ``adata.raw`` for a :class:`~scelmo.GeneEmbeddings` table (an adapter reads its
        own layer).
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
    condition, control_mask, disease_mask = _condition_masks(adata, condition_key, control, disease)
    if isinstance(model, GeneEmbeddings):
        table, used_mode, source = model, mode, "gene_embeddings"
        expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    else:
        table, used_mode, source = _adapter_table(model, adata, layer=layer, use_raw=use_raw)
        expression = expression_matrix(adata, layer=model.layer, use_raw=False)
    check_matrix(expression.matrix, where=expression.where, require="nonnegative")
    result = knockout_screen(
        expression.matrix,
        table,
        expression.var_names,
        disease_mask,
        control_mask,
        genes,
        mode=used_mode,
        keyed_by_var_names=source != "gene_embeddings",
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
    logger.info(
        "in_silico_knockout: screened %d candidates (%d disease vs %d control cells); top %s%s",
        len(result),
        int(disease_mask.sum()),
        int(control_mask.sum()),
        result.index[0] if len(result) else None,
        f"; added uns[{key_added!r}]" if key_added else "",
    )
    return result


def _condition_masks(
    adata: AnnData, condition_key: str, control: str, disease: str | Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The condition of every cell, and the masks of the control and the disease cells."""
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
        return condition, control_mask, ~control_mask
    wanted = {disease} if isinstance(disease, str) else set(map(str, disease))
    missing = wanted - set(condition)
    if missing:
        raise ValueError(f"disease categories {sorted(missing)} are not in obs[{condition_key!r}].")
    return condition, control_mask, np.isin(condition, list(wanted))


def _adapter_table(
    model: Any, adata: AnnData, *, layer: str | None, use_raw: bool
) -> tuple[GeneEmbeddings, Mode, str]:
    """The adapted gene table, mode and class name of a trained adapter, whose genes ``adata`` must have."""
    # ElmoAdapter needs torch: a model can only be one when its module was imported, and
    # anything else is refused without importing torch.
    module = sys.modules.get("scelmo.models.elmo_adapter._model")
    if module is None or not isinstance(model, module.ElmoAdapter):
        raise TypeError(
            "`model` must be a trained scelmo.models.ElmoAdapter or a scelmo.GeneEmbeddings, "
            f"got {type(model).__name__}."
        )
    if layer is not None or use_raw:
        raise ValueError(
            "`layer` and `use_raw` apply to a GeneEmbeddings table; an adapter uses its own layer "
            f"({model.layer!r})."
        )
    check_same_genes(adata.var_names, model.var_names, "the model")
    return model.get_adapted_gene_embeddings(), model.mode, type(model).__name__


def _labels(condition: np.ndarray, mask: np.ndarray) -> list[str]:
    """The distinct condition labels of the masked cells."""
    return [str(v) for v in np.unique(condition[mask])]
