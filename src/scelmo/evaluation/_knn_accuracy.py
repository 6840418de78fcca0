"""Out-of-fold kNN label transfer: accuracy and macro-F1 of a cosine ``k``-NN majority vote.

Each stratified fold's cells are voted on by the cells of the other folds only, so a cell never
votes for itself (one of the originals' bugs). The votes are :func:`scelmo.annotation.cross_validated_votes`
with the exact search (scikit-learn's brute-force ``KNeighborsClassifier``, same folds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from scelmo._neighbors import cross_validated_votes

__all__ = ["KnnScore", "knn_cross_validated"]


@dataclass(frozen=True)
class KnnScore:
    """Out-of-fold kNN label transfer: accuracy and macro-F1."""

    accuracy: float
    macro_f1: float
    k: int
    folds: int


def knn_cross_validated(
    embedding: np.ndarray,
    labels: Sequence[str] | pd.Series,
    *,
    k: int = 10,
    folds: int = 5,
    random_state: int = 0,
) -> KnnScore:
    """Stratified ``folds``-fold accuracy of a cosine ``k``-NN majority vote.

    Exact neighbours (brute force); each fold's cells are predicted from the other folds only.
    A cell whose vector is all zeros or not finite has no neighbours and counts as wrong.

    Parameters
    ----------
    embedding
        ``(n_cells, d)`` vectors.
    labels
        The cells' labels.
    k
        Neighbours per vote.
    folds
        Stratified folds (every class needs at least this many cells).
    random_state
        Seed of the folds.

    Returns
    -------
    A :class:`KnnScore`.

    Examples
    --------
    >>> import scanpy as sc
    >>> from scelmo.evaluation import knn_cross_validated
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> knn_cross_validated(adata.obsm["X_pca"], adata.obs["bulk_labels"]).accuracy > 0.7
    True
    """
    from sklearn.metrics import f1_score

    labels = np.asarray(labels).astype(str)
    votes, _ = cross_validated_votes(
        embedding, labels, k=k, folds=folds, random_state=random_state, search="exact"
    )
    predicted = np.asarray(votes.classes, dtype=object)[np.nan_to_num(votes.probs, nan=-1.0).argmax(axis=1)]
    # Queries that could not vote have NaN rows of probs (KnnVotes).
    valid = votes.valid if votes.valid is not None else ~np.isnan(votes.probs).any(axis=1)
    correct = (predicted == labels) & valid
    predicted[~valid] = None
    return KnnScore(
        accuracy=float(correct.mean()),
        macro_f1=float(f1_score(labels, predicted.astype(str), average="macro", labels=votes.classes)),
        k=k,
        folds=folds,
    )
