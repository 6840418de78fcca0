"""``tl.explain_annotation``: which genes or reference cells drove the labels of an annotation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
from anndata import AnnData

from scelmo.annotation._explain import explain

if TYPE_CHECKING:
    from scelmo.gene_embeddings import GeneEmbeddings
    from scelmo.models.langcell import LangCell
    from scelmo.text import TextEncoder

__all__ = ["explain_annotation"]


def explain_annotation(
    adata: AnnData,
    key: str = "zeroshot",
    *,
    cells: Any = None,
    classes: Any = None,
    n_top: int | None = 10,
    gene_embeddings: GeneEmbeddings | None = None,
    encoder: TextEncoder | str | None = None,
    reference: AnnData | None = None,
    model: LangCell | str | None = None,
    dictionaries: Any = None,
) -> pd.DataFrame:
    """What drove the labels of ``cells``: their genes (zero-shot) or their reference neighbours (kNN).

    The method's score is recomputed from ``adata.uns[key]`` and the inputs passed again; inputs
    that differ from the recorded ones are refused (a gene table with another content hash, a
    reference with other cells, a model with another checkpoint hash, or recomputed
    probabilities that are not those in ``adata.obsm[key + '_probs']``).

    Parameters
    ----------
    adata
        Cells annotated by :func:`~scelmo.tl.zeroshot_annotate` or :func:`~scelmo.tl.knn_annotate`.
    key
        The ``key_added`` of the annotation.
    cells
        ``None`` (all cells), a name, a list of names, a boolean mask, or ``{obs column: value(s)}``
        (e.g. ``{"leiden": "3"}``).
    classes
        ``None``: each cell's label (its most probable class when it abstained); a class, a
        list of classes, or ``"all"``.
    n_top
        Rows kept per (cell, class), largest contribution first; ``None`` keeps all.
    gene_embeddings, encoder
        The gene table (and its encoder) given to ``zeroshot_annotate`` (``method="elmo"``).
    reference
        The reference given to ``knn_annotate`` (``None`` for its cross-validated mode).
    model
        The LangCell model or checkpoint folder given to ``zeroshot_annotate``.
    dictionaries
        LangCell: the dictionaries given to :func:`~scelmo.pp.tokenize` when they were not the
        registry's. A gene token is named by the ``var_names`` of the columns ``pp.tokenize``
        made it from (its record says which matrix and gene ids); tokens stored without that
        record, or made with other dictionaries not passed here, are named ``"token <id>"``.

    Returns
    -------
    One row per (cell, class, feature), columns

    ``cell``, ``label``
        The cell and its label in ``obs[key]``.
    ``class``
        The class explained (kNN: the class the neighbour voted for).
    ``kind``, ``feature``
        ``"gene"`` and a gene (elmo, LangCell), or ``"reference_cell"`` and a reference cell (kNN).
    ``contribution``
        elmo (``score="genes"``): the gene's term ``z[c, g] * w[g, k] / s_k`` in the class
        score ``sum_g z[c, g] * w[g, k] / s_k`` (``z``: standardised expression, ``w``: the
        class's final signature weights, ``s_k``: the class score's standard deviation over the
        cells with ``scale``); the terms of all genes sum to ``score`` to float rounding.
        elmo (``score="cell"``): the gene's term in the cosine of the centred cell embedding
        ``sum_g (a[c, g] - mean a[:, g]) E_g`` (``elmo_embed``'s weights ``a`` and table rows
        ``E``) to the class vector, standardised over the cells with ``scale``; the terms sum
        to ``score`` to the float32 rounding of ``obsm[use_rep]``.
        kNN: the neighbour's share of the vote (``1/k``, or its ``1/distance`` share); the
        shares of a class sum to its probability. LangCell: gradient x input of the class
        probability on the gene token's input embedding, a first-order (approximate) effect
        that does not sum to the score.
    ``rank``
        1 for the largest contribution of the (cell, class).
    ``score``
        The cell's class score: elmo, the score before ``softmax(score / temperature)``; kNN
        and LangCell, the class probability.
    ``distance``
        kNN: the neighbour's distance (NaN for genes).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> reference, query = adata[:500].copy(), adata[500:].copy()
    >>> se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca")
    >>> frame = se.tl.explain_annotation(query, "knn", cells=query.obs_names[:2], reference=reference)
    >>> frame.groupby("cell")["contribution"].sum().le(1 + 1e-9).all()
    True
    """
    return explain(
        adata,
        key,
        cells=cells,
        classes=classes,
        n_top=n_top,
        gene_embeddings=gene_embeddings,
        encoder=encoder,
        reference=reference,
        model=model,
        dictionaries=dictionaries,
    )
