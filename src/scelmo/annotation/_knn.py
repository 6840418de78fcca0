"""k-nearest-neighbour label transfer with an hnswlib index (scELMo's evaluation, as a tool).

Defaults follow the published evaluation: cosine distance, ``M=16``, ``ef_construction=200``,
``ef=50``. Votes are a majority (each neighbour counts 1) or distance-weighted (``1 / d``, as
scikit-learn's ``weights="distance"``; neighbours at distance 0 take all the weight). Ties
go to the class that comes first in sorted order, as in scikit-learn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._optional import import_optional

__all__ = ["HnswIndex", "KnnVotes", "cross_validated_votes", "knn_votes"]

Metric = Literal["cosine", "euclidean", "ip"]
Weights = Literal["uniform", "distance"]
_SPACES = {"cosine": "cosine", "euclidean": "l2", "ip": "ip"}


class HnswIndex:
    """An hnswlib approximate nearest-neighbour index over the rows of a matrix.

    Parameters
    ----------
    data
        ``(n, d)`` vectors to index.
    metric
        ``"cosine"`` (distance ``1 - cos``), ``"euclidean"`` (distances reported as true
        Euclidean distances, not squared) or ``"ip"`` (``1 - dot``).
    M
        Graph degree (hnswlib ``M``).
    ef_construction
        Candidate list size while building.
    ef
        Candidate list size while querying (raised to ``k`` when smaller).
    n_threads
        Threads (default: all cores).
    random_state
        Seed of the graph construction.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation import HnswIndex
    >>> data = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    >>> index = HnswIndex(data)
    >>> neighbours, distances = index.query(data[:2], k=3)
    >>> neighbours[:, 0].tolist()
    [0, 1]
    """

    def __init__(
        self,
        data: np.ndarray,
        *,
        metric: Metric = "cosine",
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 50,
        n_threads: int | None = None,
        random_state: int = 0,
    ) -> None:
        hnswlib = import_optional("hnswlib", "annotation", purpose="kNN annotation (hnswlib)")
        if metric not in _SPACES:
            raise ValueError(f"`metric` must be one of {sorted(_SPACES)}, got {metric!r}.")
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"Need a non-empty 2-d array of vectors to index, got shape {data.shape}.")
        if not np.isfinite(data).all():
            raise ValueError("The vectors to index contain NaN or infinite values.")
        if metric == "cosine" and (np.linalg.norm(data, axis=1) == 0).any():
            raise ValueError(
                "Some vectors are all zeros: cosine distance is undefined for them; drop those cells."
            )
        for name, value in (("M", M), ("ef_construction", ef_construction), ("ef", ef)):
            if value < 1:
                raise ValueError(f"`{name}` must be positive, got {value}.")
        self.metric = metric
        self.M, self.ef_construction, self.ef = int(M), int(ef_construction), int(ef)
        self.n_threads = int(n_threads) if n_threads else (os.cpu_count() or 1)
        self.n_items, self.dim = data.shape
        self._index = hnswlib.Index(space=_SPACES[metric], dim=self.dim)
        self._index.init_index(
            max_elements=self.n_items,
            ef_construction=self.ef_construction,
            M=self.M,
            random_seed=random_state,
        )
        self._index.set_num_threads(self.n_threads)
        self._index.add_items(data, np.arange(self.n_items))

    def query(self, queries: np.ndarray, k: int, *, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed rows of each query, nearest first.

        Parameters
        ----------
        queries
            ``(m, d)`` vectors.
        k
            Neighbours per query.
        ef
            Override the index's ``ef`` for this call.

        Returns
        -------
        ``(m, k)`` row indices and ``(m, k)`` distances.

        Examples
        --------
        >>> import numpy as np
        >>> from scelmo.annotation import HnswIndex
        >>> index = HnswIndex(np.eye(3, dtype=np.float32) + 0.1)
        >>> index.query(np.array([[1.0, 0.0, 0.0]]), k=1)[0].tolist()
        [[0]]
        """
        if not 1 <= k <= self.n_items:
            raise ValueError(f"`k` must be between 1 and the {self.n_items} indexed vectors, got {k}.")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"Queries must be (m, {self.dim}), got {queries.shape}.")
        self._index.set_ef(max(int(ef or self.ef), k))
        labels, distances = self._index.knn_query(queries, k=k, num_threads=self.n_threads)
        distances = np.asarray(distances, dtype=np.float64)
        if self.metric == "euclidean":
            distances = np.sqrt(np.maximum(distances, 0.0))
        else:
            distances = np.maximum(distances, 0.0) if self.metric == "cosine" else distances
        return np.asarray(labels, dtype=np.int64), distances


@dataclass(frozen=True)
class KnnVotes:
    """Votes of the neighbours: class fractions per query and the neighbours used."""

    classes: list[str]
    probs: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray


def _vote(neighbor_labels: np.ndarray, distances: np.ndarray, n_classes: int, weights: Weights) -> np.ndarray:
    if weights == "uniform":
        w = np.ones_like(distances)
    elif weights == "distance":
        with np.errstate(divide="ignore"):
            w = 1.0 / distances
        exact = np.isinf(w)
        rows = exact.any(axis=1)
        w[rows] = exact[rows].astype(np.float64)
    else:
        raise ValueError(f"`weights` must be 'uniform' or 'distance', got {weights!r}.")
    probs = np.zeros((neighbor_labels.shape[0], n_classes))
    np.add.at(
        probs,
        (np.repeat(np.arange(neighbor_labels.shape[0]), neighbor_labels.shape[1]), neighbor_labels.ravel()),
        w.ravel(),
    )
    probs /= probs.sum(axis=1, keepdims=True)
    return probs


def knn_votes(
    reference: np.ndarray,
    reference_labels: Sequence[str] | np.ndarray,
    queries: np.ndarray,
    *,
    k: int = 10,
    weights: Weights = "uniform",
    metric: Metric = "cosine",
    M: int = 16,
    ef_construction: int = 200,
    ef: int = 50,
    n_threads: int | None = None,
    random_state: int = 0,
    classes: Sequence[str] | None = None,
) -> KnnVotes:
    """Class fractions among each query's ``k`` nearest reference vectors.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation import knn_votes
    >>> ref = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    >>> votes = knn_votes(ref, ["a", "a", "b", "b"], np.array([[1.0, 0.05]]), k=3)
    >>> votes.classes, votes.probs.round(3).tolist()
    (['a', 'b'], [[0.667, 0.333]])
    """
    reference_labels = np.asarray(reference_labels).astype(str)
    if len(reference_labels) != len(reference):
        raise ValueError(f"{len(reference)} reference vectors but {len(reference_labels)} labels.")
    classes = sorted({str(v) for v in reference_labels}) if classes is None else [str(c) for c in classes]
    codes = {c: i for i, c in enumerate(classes)}
    label_codes = np.array([codes[label] for label in reference_labels], dtype=np.int64)
    k = min(k, len(reference))
    index = HnswIndex(
        reference,
        metric=metric,
        M=M,
        ef_construction=ef_construction,
        ef=ef,
        n_threads=n_threads,
        random_state=random_state,
    )
    neighbors, distances = index.query(queries, k)
    probs = _vote(label_codes[neighbors], distances, len(classes), weights)
    return KnnVotes(classes=classes, probs=probs, neighbors=neighbors, distances=distances)


def cross_validated_votes(
    embedding: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    *,
    folds: int = 5,
    random_state: int = 0,
    **kwargs,
) -> tuple[KnnVotes, np.ndarray]:
    """Out-of-fold votes: each stratified fold is queried against an index of the other folds.

    Returns
    -------
    The votes (``neighbors`` index into ``embedding``) and the fold of each cell.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation import cross_validated_votes
    >>> x = np.vstack([np.eye(2)[[0] * 10], np.eye(2)[[1] * 10]]) + 0.01
    >>> votes, fold = cross_validated_votes(x, ["a"] * 10 + ["b"] * 10, folds=2, k=3)
    >>> votes.probs.argmax(1).tolist() == [0] * 10 + [1] * 10
    True
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels).astype(str)
    embedding = np.asarray(embedding, dtype=np.float32)
    classes = sorted({str(v) for v in labels})
    counts = np.unique(labels, return_counts=True)[1]
    if folds < 2:
        raise ValueError(f"`folds` must be at least 2, got {folds}.")
    if counts.min() < folds:
        small = [c for c, n in zip(*np.unique(labels, return_counts=True), strict=True) if n < folds]
        raise ValueError(
            f"Classes {small[:5]} have fewer cells than folds={folds}; lower `folds` or drop those classes."
        )
    k = kwargs.pop("k", 10)
    n = len(labels)
    probs = np.zeros((n, len(classes)))
    neighbors = np.zeros((n, k), dtype=np.int64)
    distances = np.zeros((n, k))
    fold_of = np.zeros(n, dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    for fold, (train, test) in enumerate(splitter.split(embedding, labels)):
        votes = knn_votes(
            embedding[train],
            labels[train],
            embedding[test],
            k=k,
            classes=classes,
            random_state=random_state,
            **kwargs,
        )
        probs[test] = votes.probs
        neighbors[test, : votes.neighbors.shape[1]] = train[votes.neighbors]
        distances[test, : votes.distances.shape[1]] = votes.distances
        fold_of[test] = fold
    return KnnVotes(classes=classes, probs=probs, neighbors=neighbors, distances=distances), fold_of
