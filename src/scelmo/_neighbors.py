"""Nearest neighbours and their label votes: the one kNN of annotation, evaluation and the adapter.

Two searches: :class:`HnswIndex` (hnswlib, approximate; scELMo's evaluation defaults: cosine
distance, ``M=16``, ``ef_construction=200``, ``ef=50``) and :func:`exact_neighbors` (brute
force, in blocks; numpy arrays, or torch tensors on their own device). Votes are a majority
(each neighbour counts 1) or distance-weighted (``1 / d``, as scikit-learn's
``weights="distance"``; neighbours at distance 0 take all the weight). Ties go to the class
that comes first in sorted order, as in scikit-learn.

A query whose vector is not finite (or, for the cosine metric, all zeros) has no neighbours:
it gets no votes (``valid`` is False, its probabilities are NaN) instead of the arbitrary
neighbours an index returns for it. ``k`` larger than the reference is lowered to the
reference size with a warning (every query then gets the same votes).

This is a core module (no AnnData, no models): the adapter's training plan votes with
:func:`knn_vote`, ``tl.knn_annotate`` with :func:`knn_votes` and :func:`cross_validated_votes`,
and :mod:`scelmo.evaluation` scores out-of-fold votes.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from ._dask_blocks import map_row_chunks, shared
from ._matrix import is_dask
from ._optional import import_optional

if TYPE_CHECKING:
    import torch

__all__ = [
    "HnswIndex",
    "KnnVotes",
    "block_votes",
    "clamp_k",
    "cross_validated_votes",
    "exact_neighbors",
    "knn_accuracy",
    "knn_vote",
    "knn_votes",
    "queryable",
]

Metric = Literal["cosine", "euclidean", "ip"]
Weights = Literal["uniform", "distance"]
Search = Literal["hnsw", "exact"]
_SPACES = {"cosine": "cosine", "euclidean": "l2", "ip": "ip"}
#: Entries of one block's query x reference score matrix in the exact search (~128 MB in float32).
_BLOCK_ENTRIES = 2**25


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
        _check_metric(metric)
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


def _check_metric(metric: str) -> None:
    if metric not in _SPACES:
        raise ValueError(f"`metric` must be one of {sorted(_SPACES)}, got {metric!r}.")


def _is_tensor(array: Any) -> bool:
    return type(array).__module__.startswith("torch")


def _unit_rows(x: Any) -> Any:
    # torch.nn.functional.normalize's formula (eps 1e-12), so that tensors give the same bits.
    if _is_tensor(x):
        return x / x.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12).expand_as(x)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _top_k(scores: Any, k: int) -> tuple[Any, Any]:
    """Columns of the ``k`` highest scores of each row, highest first."""
    if _is_tensor(scores):
        values, indices = scores.topk(k, dim=1)
        return indices, values
    indices = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, indices, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(indices, order, axis=1), np.take_along_axis(values, order, axis=1)


@overload
def exact_neighbors(
    reference: np.ndarray, queries: np.ndarray, k: int, *, metric: Metric = ..., block: int | None = ...
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def exact_neighbors(
    reference: torch.Tensor, queries: torch.Tensor, k: int, *, metric: Metric = ..., block: int | None = ...
) -> tuple[torch.Tensor, torch.Tensor]: ...
def exact_neighbors(
    reference: Any,  # np.ndarray or torch.Tensor (the overloads above); the body works in either library
    queries: Any,
    k: int,
    *,
    metric: Metric = "cosine",
    block: int | None = None,
) -> tuple[Any, Any]:
    """The ``k`` nearest ``reference`` rows of each query by brute force, nearest first.

    Queries go in blocks that keep a block's score matrix at about 32 million entries. Torch
    tensors stay on the reference's device (the adapter validates on its GPU); numpy arrays
    keep their floating dtype (float64 stays float64, as in scikit-learn).

    Parameters
    ----------
    reference
        ``(n, d)`` vectors to search.
    queries
        ``(m, d)`` vectors.
    k
        Neighbours per query (at most ``n``).
    metric
        ``"cosine"``, ``"euclidean"`` or ``"ip"``, with :class:`HnswIndex`'s distances.
    block
        Queries per block (default: about 32 million scores per block).

    Returns
    -------
    ``(m, k)`` row indices and ``(m, k)`` distances, of the input's array library.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo._neighbors import exact_neighbors
    >>> ref = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> exact_neighbors(ref, np.array([[1.0, 0.05]]), 2)[0].tolist()
    [[0, 1]]
    """
    _check_metric(metric)
    tensor = _is_tensor(reference)
    if tensor:
        reference = reference.float()
    else:
        reference = np.asarray(reference)
        reference = reference if reference.dtype.kind == "f" else reference.astype(np.float32)
    if not 1 <= k <= reference.shape[0]:
        raise ValueError(f"`k` must be between 1 and the {reference.shape[0]} reference vectors, got {k}.")
    if metric == "cosine":
        reference = _unit_rows(reference)
    block = block or max(1, _BLOCK_ENTRIES // max(reference.shape[0], 1))
    found, best = [], []
    for start in range(0, queries.shape[0], block):
        if tensor:
            q = queries[start : start + block].float().to(reference.device)
        else:
            q = np.asarray(queries[start : start + block], dtype=reference.dtype)
        q = _unit_rows(q) if metric == "cosine" else q
        scores = q @ reference.T
        if metric == "euclidean":
            scores = 2 * scores - (q * q).sum(1)[:, None] - (reference * reference).sum(1)[None, :]
        indices, values = _top_k(scores, k)
        found.append(indices)
        best.append(values)
    return _neighbor_arrays(found, best, k, metric, like=reference)


def _neighbor_arrays(found: list, best: list, k: int, metric: str, *, like: Any) -> tuple[Any, Any]:
    """Join the blocks; turn similarities into :class:`HnswIndex`'s distances."""
    indices: Any  # of the input's array library
    scores: Any
    if _is_tensor(like):
        import torch

        if not found:
            return torch.zeros((0, k), dtype=torch.long), torch.zeros((0, k))
        indices, scores = torch.cat(found), torch.cat(best)
        if metric == "euclidean":
            return indices, (-scores).clamp_min(0).sqrt()
        return indices, (1 - scores).clamp_min(0) if metric == "cosine" else 1 - scores
    if not found:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k))
    indices, scores = np.concatenate(found).astype(np.int64), np.concatenate(best).astype(np.float64)
    if metric == "euclidean":
        return indices, np.sqrt(np.maximum(-scores, 0.0))
    return indices, np.maximum(1 - scores, 0.0) if metric == "cosine" else 1 - scores


@overload
def knn_vote(
    query: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    *,
    k: int,
    n_labels: int,
    block: int | None = ...,
) -> np.ndarray: ...
@overload
def knn_vote(
    query: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    *,
    k: int,
    n_labels: int,
    block: int | None = ...,
) -> torch.Tensor: ...
def knn_vote(
    query: Any,  # np.ndarray or torch.Tensor (the overloads above)
    reference: Any,
    reference_labels: Any,
    *,
    k: int,
    n_labels: int,
    block: int | None = None,
) -> Any:
    """Votes ``(n_query, n_labels)`` of the ``k`` cosine-nearest ``reference`` cells of each query.

    The exact search of :func:`exact_neighbors` over integer labels ``0 .. n_labels - 1``;
    ``k`` is lowered to the reference size. Torch tensors stay on the reference's device.

    Examples
    --------
    >>> import torch
    >>> from scelmo._neighbors import knn_vote
    >>> ref = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> knn_vote(torch.tensor([[1.0, 0.05]]), ref, torch.tensor([0, 0, 1]), k=2, n_labels=2)
    tensor([[2, 0]])
    """
    k = min(k, reference.shape[0])
    neighbours, _ = exact_neighbors(reference, query, k, block=block)
    if _is_tensor(neighbours):
        from torch.nn import functional as F

        labels = reference_labels.to(neighbours.device).long()[neighbours]
        return F.one_hot(labels, n_labels).sum(dim=1)
    labels = np.asarray(reference_labels, dtype=np.int64)[neighbours]
    counts = np.zeros((labels.shape[0], n_labels), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(labels.shape[0]), k), labels.ravel()), 1)
    return counts


@overload
def knn_accuracy(
    query: np.ndarray,
    query_labels: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    *,
    k: int,
    n_labels: int,
    block: int | None = ...,
) -> float: ...
@overload
def knn_accuracy(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    reference: torch.Tensor,
    reference_labels: torch.Tensor,
    *,
    k: int,
    n_labels: int,
    block: int | None = ...,
) -> float: ...
def knn_accuracy(
    query: Any,  # np.ndarray or torch.Tensor, all four alike (the overloads above)
    query_labels: Any,
    reference: Any,
    reference_labels: Any,
    *,
    k: int,
    n_labels: int,
    block: int | None = None,
) -> float:
    """Accuracy of a cosine ``k``-NN majority vote of ``query`` cells among ``reference`` cells.

    Ties go to the lowest label index (deterministic).

    Examples
    --------
    >>> import torch
    >>> from scelmo._neighbors import knn_accuracy
    >>> ref = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> knn_accuracy(torch.tensor([[1.0, 0.05]]), torch.tensor([0]), ref, torch.tensor([0, 0, 1]), k=2, n_labels=2)
    1.0
    """
    votes = knn_vote(query, reference, reference_labels, k=k, n_labels=n_labels, block=block)
    if _is_tensor(votes):
        correct = int((votes.argmax(dim=1).cpu() == query_labels.cpu()).sum())
    else:
        correct = int((votes.argmax(axis=1) == np.asarray(query_labels)).sum())
    return correct / max(query.shape[0], 1)


@dataclass(frozen=True)
class KnnVotes:
    """Votes of the neighbours: class fractions per query and the neighbours used.

    Attributes
    ----------
    classes
        Class names, in the column order of ``probs``.
    probs
        ``(n_queries, n_classes)`` vote shares; NaN rows for queries that could not vote.
    neighbors, distances
        ``(n_queries, k)`` neighbours (reference rows, ``-1`` for invalid queries) and distances.
    valid
        Queries that got votes: a finite vector (non-zero for the cosine metric).
    k
        The number of neighbours used (``k`` lowered to the reference size if needed).
    """

    classes: list[str]
    probs: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    valid: np.ndarray | None = None
    k: int | None = None


def queryable(vectors: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Rows that can be searched: finite, and not all zeros for the cosine metric (its distance is undefined).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo._neighbors import queryable
    >>> queryable(np.array([[1.0, 0.0], [np.nan, 1.0], [0.0, 0.0]])).tolist()
    [True, False, False]
    """
    vectors = np.asarray(vectors)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.isfinite(vectors).all(axis=1)
        if metric == "cosine":
            ok &= (vectors != 0).any(axis=1)
    return ok


def clamp_k(k: int, n_reference: int, *, stacklevel: int = 3) -> int:
    """``k``, lowered to ``n_reference`` with a warning when the reference is smaller; an empty reference is an error.

    Examples
    --------
    >>> from scelmo._neighbors import clamp_k
    >>> clamp_k(10, 50)
    10
    """
    if n_reference < 1:
        raise ValueError("The reference has no labelled cells: nothing to vote with.")
    if k > n_reference:
        warnings.warn(
            f"k={k} is more than the {n_reference} reference cells: using k={n_reference}. Every cell then "
            "gets the same votes (the reference's class shares); use a larger reference or a smaller k.",
            UserWarning,
            stacklevel=stacklevel,
        )
        return n_reference
    return k


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
    search: Search = "hnsw",
) -> KnnVotes:
    """Class fractions among each query's ``k`` nearest reference vectors.

    Parameters
    ----------
    reference, reference_labels
        ``(n, d)`` labelled vectors.
    queries
        ``(m, d)`` vectors to vote for: an array, or a dask array (one task per row chunk, the
        index built here once and shared by the tasks as one key of the graph).
    k
        Neighbours per query (lowered to ``n`` with a warning).
    weights
        ``"uniform"`` (majority) or ``"distance"`` (``1 / d``).
    metric
        ``"cosine"``, ``"euclidean"`` or ``"ip"``.
    M, ef_construction, ef, n_threads, random_state
        Options of the :class:`HnswIndex` (``search="hnsw"``).
    classes
        Column order of ``probs`` (default: the sorted labels).
    search
        ``"hnsw"`` (:class:`HnswIndex`, approximate) or ``"exact"`` (:func:`exact_neighbors`,
        brute force: scikit-learn's ``KNeighborsClassifier(algorithm="brute")``).

    Returns
    -------
    A :class:`KnnVotes`.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation import knn_votes
    >>> ref = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    >>> votes = knn_votes(ref, ["a", "a", "b", "b"], np.array([[1.0, 0.05]]), k=3)
    >>> votes.classes, votes.probs.round(3).tolist()
    (['a', 'b'], [[0.667, 0.333]])
    """
    if search not in ("hnsw", "exact"):
        raise ValueError(f"`search` must be 'hnsw' or 'exact', got {search!r}.")
    reference_labels = np.asarray(reference_labels).astype(str)
    if len(reference_labels) != len(reference):
        raise ValueError(f"{len(reference)} reference vectors but {len(reference_labels)} labels.")
    classes = sorted({str(v) for v in reference_labels}) if classes is None else [str(c) for c in classes]
    codes = {c: i for i, c in enumerate(classes)}
    label_codes = np.array([codes[label] for label in reference_labels], dtype=np.int64)
    k = clamp_k(k, len(reference))
    if is_dask(queries):
        if queries.ndim != 2:
            raise ValueError(f"Queries must be a 2-d array (m, d), got shape {queries.shape}.")
        queries = queries.astype(np.float32) if search == "hnsw" or queries.dtype.kind != "f" else queries
    else:
        queries = np.asarray(queries)
        if search == "hnsw" or queries.dtype.kind != "f":
            queries = queries.astype(np.float32)
        if queries.ndim != 2:
            raise ValueError(f"Queries must be a 2-d array (m, d), got shape {queries.shape}.")
    searcher: HnswIndex | np.ndarray = reference
    if search == "hnsw":
        options: dict[str, Any] = {
            "M": M,
            "ef_construction": ef_construction,
            "ef": ef,
            "n_threads": n_threads,
        }
        searcher = HnswIndex(reference, metric=metric, random_state=random_state, **options)
    vote: dict[str, Any] = {"k": k, "n_classes": len(classes), "weights": weights, "metric": metric}
    if is_dask(queries):
        # one task per row chunk of the queries; the index (or reference) and labels are one key each
        parts = map_row_chunks(
            block_votes, queries, shared(searcher, pure=False), shared(label_codes), **vote
        )
        probs, neighbors, distances, valid = (np.concatenate([part[i] for part in parts]) for i in range(4))
    else:
        probs, neighbors, distances, valid = block_votes(queries, searcher, label_codes, **vote)
    return KnnVotes(classes=classes, probs=probs, neighbors=neighbors, distances=distances, valid=valid, k=k)


def block_votes(
    queries: np.ndarray,
    searcher: HnswIndex | np.ndarray,
    label_codes: np.ndarray,
    *,
    k: int,
    n_classes: int,
    weights: Weights = "uniform",
    metric: Metric = "cosine",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Votes of one block of queries: the work of :func:`knn_votes` (and of each of its dask tasks).

    Parameters
    ----------
    queries
        ``(m, d)`` vectors (a dask task's block).
    searcher
        An :class:`HnswIndex`, or the ``(n, d)`` reference vectors for the exact search.
    label_codes
        Class index of each reference vector.
    k, n_classes, weights, metric
        As in :func:`knn_votes`.

    Returns
    -------
    ``probs`` ``(m, n_classes)``, ``neighbors`` and ``distances`` ``(m, k)``, ``valid`` ``(m,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo._neighbors import block_votes
    >>> ref = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    >>> probs, *_ = block_votes(np.array([[1.0, 0.0]]), ref, np.array([0, 0, 1]), k=2, n_classes=2)
    >>> probs.tolist()
    [[1.0, 0.0]]
    """
    queries = np.asarray(queries)
    valid = queryable(queries, metric)
    neighbors = np.full((queries.shape[0], k), -1, dtype=np.int64)
    distances = np.full((queries.shape[0], k), np.nan)
    probs = np.full((queries.shape[0], n_classes), np.nan)
    if valid.any():
        if isinstance(searcher, HnswIndex):
            found, found_distances = searcher.query(queries[valid], k)
        else:
            found, found_distances = exact_neighbors(searcher, queries[valid], k, metric=metric)
        neighbors[valid], distances[valid] = found, found_distances
        probs[valid] = _vote(label_codes[found], found_distances, n_classes, weights)
    return probs, neighbors, distances, valid


def _stratified_folds(
    labels: np.ndarray, folds: int, random_state: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled folds (scikit-learn's); a class with fewer cells than folds is an error."""
    from sklearn.model_selection import StratifiedKFold

    if folds < 2:
        raise ValueError(f"`folds` must be at least 2, got {folds}.")
    names, counts = np.unique(labels, return_counts=True)
    if counts.min() < folds:
        small = [c for c, n in zip(names, counts, strict=True) if n < folds]
        raise ValueError(
            f"Classes {small[:5]} have fewer cells than folds={folds}; lower `folds` or drop those classes."
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros((len(labels), 1)), labels))


def cross_validated_votes(
    embedding: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    *,
    folds: int = 5,
    random_state: int = 0,
    **kwargs: Any,
) -> tuple[KnnVotes, np.ndarray]:
    """Out-of-fold votes: each stratified fold is queried against the other folds.

    Parameters
    ----------
    embedding, labels
        ``(n, d)`` labelled vectors.
    folds
        Stratified folds (scikit-learn's ``StratifiedKFold(shuffle=True)``).
    random_state
        Seed of the folds (and of each fold's index).
    **kwargs
        Options of :func:`knn_votes` (``k``, ``weights``, ``metric``, ``search``, index options).

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
    labels = np.asarray(labels).astype(str)
    embedding = np.asarray(embedding)
    if kwargs.get("search", "hnsw") == "hnsw" or embedding.dtype.kind != "f":
        embedding = embedding.astype(np.float32)
    classes = sorted({str(v) for v in labels})
    splits = _stratified_folds(labels, folds, random_state)
    n = len(labels)
    # One warning for all folds: each is voted on by the cells of the other folds.
    k = clamp_k(kwargs.pop("k", 10), min(train.size for train, _ in splits))
    probs = np.zeros((n, len(classes)))
    neighbors = np.zeros((n, k), dtype=np.int64)
    distances = np.zeros((n, k))
    valid = np.ones(n, dtype=bool)
    fold_of = np.zeros(n, dtype=np.int64)
    for fold, (train, test) in enumerate(splits):
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
        neighbors[test] = np.where(votes.neighbors >= 0, train[votes.neighbors], -1)
        distances[test] = votes.distances
        valid[test] = votes.valid
        fold_of[test] = fold
    votes = KnnVotes(classes=classes, probs=probs, neighbors=neighbors, distances=distances, valid=valid, k=k)
    return votes, fold_of
