"""Anchored self-training of zero-shot gene signatures: the data may add genes, never remove the text's.

Self-training that replaces a class's text signature by the genes its most confident cells
express drifts: a weak text signature that happens to lean towards T cells becomes a
ribosomal program and takes every T cell, and nothing of the text is left in it. Here the
text-selected genes (the *anchors*) are kept in every round:

1. each cell goes to its best class (scores standardised per class); the top
   ``CONFIDENT_FRACTION`` of a class's cells by margin are its confident cells;
2. the class's anchor check: the weighted mean, over its anchors, of the difference between
   the confident cells' mean standardised expression and that of the cells assigned elsewhere.
   A class whose confident cells do not express its anchors above the others (check <= 0)
   keeps its text signature unchanged: its cells are not what its text describes;
3. otherwise the data genes are the ``n_genes`` genes with the largest such difference among
   the genes that correlate positively with the class's anchor score over all cells (so a
   program that is not the anchors' cannot come in);
4. the refined signature is ``(anchor weights + data weights) / 2``: every anchor keeps at least
   half its text weight, genes named negative keep their negative weight, and the data half
   can be at most as heavy as the text half.

So by construction every text-selected gene stays in the signature with a positive weight
(``refined_genes`` always contains ``genes``), which the tests check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CONFIDENT_FRACTION", "anchored_refine", "confident_cells", "standardise_columns", "top_genes"]

#: Fraction of a class's cells (by margin) that give its data genes in each refinement round.
CONFIDENT_FRACTION = 0.3


def standardise_columns(scores: np.ndarray) -> np.ndarray:
    """Each column minus its mean, over its standard deviation (constant columns: minus the mean).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_refine import standardise_columns
    >>> standardise_columns(np.array([[1.0, 5.0], [3.0, 5.0]])).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    sd = scores.std(axis=0)
    return (scores - scores.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)


def top_genes(values: np.ndarray, n: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Indicator weights (genes x classes) of the ``n`` largest values per column, each ``1/n``.

    ``allowed`` (genes, or genes x classes) excludes genes; ties keep the earlier gene.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_refine import top_genes
    >>> top_genes(np.array([[3.0], [1.0], [2.0]]), 2).ravel().tolist()
    [0.5, 0.0, 0.5]
    """
    values = np.array(values, dtype=np.float64, copy=True)
    if allowed is not None:
        mask = np.asarray(allowed, dtype=bool)
        values[~(mask if mask.ndim == 2 else np.broadcast_to(mask[:, None], values.shape))] = -np.inf
    weights = np.zeros_like(values)
    for k in range(values.shape[1]):
        finite = np.flatnonzero(np.isfinite(values[:, k]))
        take = finite[np.argsort(-values[finite, k], kind="stable")[:n]]
        if take.size:
            weights[take, k] = 1.0 / take.size
    return weights


def confident_cells(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best class per cell, and the class of each confident cell (``-1``: not confident).

    A class's confident cells are the top :data:`CONFIDENT_FRACTION` of the cells it wins, by
    the margin of its score over the runner-up's.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_refine import confident_cells
    >>> best, confident = confident_cells(np.array([[3.0, 0.0], [1.0, 0.9], [0.0, 2.0]]))
    >>> best.tolist(), confident.tolist()
    ([0, 0, 1], [0, -1, 1])
    """
    n_cells, n_classes = scores.shape
    order = np.argsort(-scores, axis=1)
    rows = np.arange(n_cells)
    best = order[:, 0]
    margin = scores[rows, best] - (scores[rows, order[:, 1]] if n_classes > 1 else 0.0)
    confident = np.full(n_cells, -1)
    for k in range(n_classes):
        members = np.flatnonzero(best == k)
        if members.size == 0:
            continue
        cut = np.quantile(margin[members], 1 - CONFIDENT_FRACTION)
        confident[members[margin[members] >= cut]] = k
    return best, confident


def anchored_refine(
    standardised: Any,
    text_weights: np.ndarray,
    n_genes: int,
    rounds: int,
    *,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Self-train signatures for ``rounds`` rounds, keeping the text's genes (see the module description).

    Parameters
    ----------
    standardised
        The per-gene standardised expression (``Standardised``: ``times``, ``group_means``,
        ``gene_correlations``).
    text_weights
        ``(genes, classes)`` text signature weights (positive: anchors; negative: named against).
    n_genes
        Data genes added per class and round.
    rounds
        Refinement rounds (>= 1).
    allowed
        Genes that may be added (for example, genes that vary over cells).

    Returns
    -------
    scores
        ``(cells, classes)`` scores of the refined signatures.
    weights
        ``(genes, classes)`` refined weights.
    info
        ``kept_text``: per class, whether its last round kept the text signature (the anchor
        check failed); ``anchor_check``: the last round's anchor expression difference.
    """
    anchors = np.clip(text_weights, 0.0, None)
    against = np.clip(text_weights, None, 0.0)
    weights = text_weights.copy()
    scores = standardised.times(weights)
    n_cells, n_classes = scores.shape
    kept = np.zeros(n_classes, dtype=bool)
    check = np.zeros(n_classes)
    anchor_scores = standardised.times(anchors)
    correlation = standardised.gene_correlations(anchor_scores)
    for _ in range(rounds):
        best, confident = confident_cells(standardise_columns(scores))
        conf_means = standardised.group_means(confident, n_classes)
        assigned = standardised.group_means(best, n_classes)
        counts = np.bincount(best, minlength=n_classes).astype(np.float64)
        total = counts @ assigned
        new = text_weights.copy()
        for k in range(n_classes):
            if counts[k] == 0 or counts[k] == n_cells:
                kept[k] = True  # no cell (or every cell) took it: nothing to learn from
                continue
            rest = (total - counts[k] * assigned[k]) / (n_cells - counts[k])
            difference = conf_means[k] - rest
            check[k] = float(difference @ anchors[:, k]) / max(anchors[:, k].sum(), 1e-12)
            if check[k] <= 0:
                kept[k] = True
                continue
            kept[k] = False
            ok = correlation[:, k] > 0
            if allowed is not None:
                ok &= allowed
            data = top_genes(difference[:, None], n_genes, allowed=ok)[:, 0]
            new[:, k] = (anchors[:, k] + data) / 2 + against[:, k]
        weights = new
        scores = standardised.times(weights)
    return scores, weights, {"kept_text": kept, "anchor_check": check}
