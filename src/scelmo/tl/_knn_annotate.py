"""``tl.knn_annotate``: transfer labels from a reference by k-nearest-neighbour vote (hnswlib)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from anndata import AnnData

from scelmo._anndata import check_key
from scelmo._logging import logger
from scelmo._matrix import is_dask
from scelmo._neighbors import KnnVotes, cross_validated_votes, knn_votes, queryable
from scelmo.annotation._abstention import decide
from scelmo.annotation._output import UNKNOWN, AnnotationResult, write_annotation


def _dense_float32(block: Any) -> np.ndarray:
    return np.asarray(block.toarray() if hasattr(block, "toarray") else block, dtype=np.float32)


def _embedding(adata: AnnData, use_rep: str, what: str, *, lazy: bool = False) -> Any:
    """The embedding as float32; a dask one stays lazy with ``lazy`` (else it is computed)."""
    if use_rep == "X":
        vectors = adata.X
    elif use_rep not in adata.obsm:
        raise KeyError(
            f"{what}.obsm[{use_rep!r}] not found (available: {list(adata.obsm)}); compute it first, e.g. "
            "scelmo.tl.elmo_embed or sc.pp.pca, or pass use_rep=."
        )
    else:
        vectors = adata.obsm[use_rep]
    if is_dask(vectors):
        vectors = vectors.map_blocks(_dense_float32, dtype=np.float32, meta=np.empty((0, 0), np.float32))
        return vectors if lazy else vectors.compute()
    return _dense_float32(vectors)


def _names(adata: AnnData, rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(repr(str(name)) for name in adata.obs_names[rows[:limit]])
    return shown + (f" and {rows.size - limit} more" if rows.size > limit else "")


def _check_reference(adata: AnnData, vectors: np.ndarray, where: str) -> None:
    """Refuse a reference with non-finite vectors, naming the cells (they would vote for any query)."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{where} has NaN or infinite values in {bad.size} of {len(vectors)} reference cells "
            f"({_names(adata, bad)}): a reference cell must have a finite embedding. Recompute the embedding, "
            "or drop those cells, e.g. reference = reference[np.isfinite(reference.obsm[key]).all(1)].copy()."
        )


def _table_hash(adata: AnnData, use_rep: str) -> str | None:
    """The content hash of the gene table recorded for ``use_rep`` (``tl.elmo_embed`` writes it), if any."""
    record = adata.uns.get(use_rep)
    if isinstance(record, Mapping):
        table = record.get("gene_table")
        if isinstance(table, Mapping):
            return table.get("content_hash")
    return None


def knn_annotate(
    adata: AnnData,
    reference: AnnData | None,
    label_key: str,
    *,
    use_rep: str = "X_elmo",
    reference_rep: str | None = None,
    k: int = 10,
    weights: Literal["uniform", "distance"] = "uniform",
    metric: Literal["cosine", "euclidean", "ip"] = "cosine",
    M: int = 16,
    ef_construction: int = 200,
    ef: int = 50,
    folds: int = 5,
    threshold: float | None = None,
    min_margin: float | None = None,
    n_threads: int | None = None,
    random_state: int = 0,
    key_added: str = "knn",
    copy: bool = False,
) -> AnnData | None:
    """Label cells by the vote of their ``k`` nearest labelled cells (hnswlib index).

    With a ``reference`` AnnData, its cells (``reference.obs[label_key]``) are indexed and every
    cell of ``adata`` is queried. With ``reference=None``, ``adata`` is its own reference in
    cross-validation: stratified ``folds``, each predicted from an index of the other folds, so
    that no cell votes for itself (the predictions are out-of-fold, fit for scoring an
    embedding).

    Parameters
    ----------
    adata
        Cells to label, with embeddings in ``obsm[use_rep]`` (an array, or a dask array, e.g.
        from :func:`scelmo.tl.elmo_embed` on a dask matrix: see Returns).
    reference
        Labelled cells embedded the same way, or ``None`` for the cross-validated mode. The
        reference is held in memory (its index is built here, once).
    label_key
        Column of ``reference.obs`` (or ``adata.obs`` in cross-validation) with the labels.
    use_rep
        Embedding to compare (``obsm`` key, or ``"X"``).
    reference_rep
        Embedding key in ``reference`` (default: ``use_rep``).
    k
        Neighbours per cell. When the reference has fewer (labelled) cells, ``k`` is lowered to
        their number with a warning; an empty reference is an error.
    weights
        ``"uniform"`` (majority vote) or ``"distance"`` (votes weighted by ``1 / distance``).
    metric
        ``"cosine"`` (default, as scELMo), ``"euclidean"`` or ``"ip"``.
    M, ef_construction, ef
        hnswlib index settings (defaults as scELMo: 16, 200, 50). Raise ``ef`` for higher
        recall at some speed.
    folds
        Folds of the cross-validated mode.
    threshold, min_margin
        Abstention: cells whose vote share is below ``threshold``, or whose two best classes
        differ by less than ``min_margin``, are labelled ``"unknown"``.
    n_threads
        Threads of hnswlib (default: all cores).
    random_state
        Seed of the index and of the folds.
    key_added
        Prefix of the fields written (see Returns).
    copy
        Return a copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or a copy of ``adata`` when ``copy=True``; sets

    ``adata.obs[key_added]``
        Predicted label (categorical; ``"unknown"`` for abstaining cells and for cells whose
        vector is not finite, or all zeros with the cosine metric: those are never labelled,
        and a warning gives their number).
    ``adata.obs[key_added + '_score']``
        Confidence: the (weighted) share of neighbours voting for that label (NaN for cells
        that could not vote).
    ``adata.obsm[key_added + '_probs']``
        ``(n_obs, n_classes)`` vote shares (NaN rows for cells that could not vote).
    ``adata.uns[key_added]``
        ``method="knn"``, ``classes``, ``params`` (k, ``k_used``, weights, metric, index
        settings, ``mode``: ``"reference"`` or ``"cross_validated"``), ``provenance``,
        ``n_unknown``, ``n_not_finite``.

    With a dask embedding and a ``reference``, the query cells are voted on as a dask graph,
    one task per row chunk, against the reference's index (built once, in memory, and one key
    of the graph: a cluster sends it to each worker once); the embeddings are never gathered in
    one process. What is written is computed: ``obs`` is a pandas DataFrame and cannot hold a
    lazy column, and abstention needs the vote shares, so the labels, scores and the
    ``(n_obs, n_classes)`` vote shares are numpy. With ``reference=None`` the embeddings are
    the reference: they are computed into memory to build the index.

    Raises
    ------
    ValueError
        If the reference (``adata`` itself in the cross-validated mode) has a non-finite
        vector, or no labelled cell.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca")
    >>> float((adata.obs["knn"] == adata.obs["bulk_labels"]).mean()) > 0.7
    True
    >>> reference, query = adata[:500].copy(), adata[500:].copy()
    >>> se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca", weights="distance")
    >>> bool(query.obs["knn_score"].between(0, 1).all())
    True
    """
    check_key(key_added)
    if k < 1:
        raise ValueError(f"`k` must be at least 1, got {k}.")
    if copy:
        adata = adata.copy()
    index_options: dict[str, Any] = {
        "weights": weights,
        "metric": metric,
        "M": M,
        "ef_construction": ef_construction,
        "ef": ef,
    }
    params = {
        "k": k,
        **index_options,
        "use_rep": use_rep,
        "label_key": label_key,
        "threshold": threshold,
        "min_margin": min_margin,
        "random_state": random_state,
    }
    index_options["n_threads"] = n_threads
    query = _embedding(adata, use_rep, "adata", lazy=reference is not None)
    provenance: dict[str, object] = {}
    if reference is None:
        votes = _cross_validated(adata, query, label_key, use_rep, folds, random_state, k, index_options)
        params.update(mode="cross_validated", folds=folds)
    else:
        reference_rep = reference_rep or use_rep
        votes, n_reference, theirs = _reference_votes(
            adata, reference, query, label_key, use_rep, reference_rep, random_state, k, index_options
        )
        params.update(mode="reference", reference_rep=reference_rep, n_reference=n_reference)
        if theirs:
            provenance["gene_table_hash"] = theirs
    labels, score, n_bad = _decide(adata, votes, query, use_rep, metric, threshold, min_margin)
    params["k_used"] = int(votes.k if votes.k is not None else k)
    result = AnnotationResult(
        method="knn",
        classes=votes.classes,
        probs=votes.probs,
        labels=labels,
        score=score,
        params=params,
        provenance=provenance,
        extra={"n_not_finite": n_bad},
    )
    write_annotation(adata, result, key_added)
    logger.info(
        "added obs[%r] (%s %d-NN, %d classes, %d unknown), obs[%r], obsm[%r] and uns[%r]",
        key_added,
        params["mode"],
        k,
        len(votes.classes),
        int((labels == UNKNOWN).sum()),
        f"{key_added}_score",
        f"{key_added}_probs",
        key_added,
    )
    return adata if copy else None


def _cross_validated(
    adata: AnnData,
    query: np.ndarray,
    label_key: str,
    use_rep: str,
    folds: int,
    random_state: int,
    k: int,
    index_options: dict[str, Any],
) -> KnnVotes:
    """Out-of-fold votes of ``adata``'s own labelled cells (``reference=None``)."""
    if label_key not in adata.obs:
        raise KeyError(
            f"adata.obs[{label_key!r}] not found: the cross-validated mode (reference=None) needs labels "
            "in adata itself; pass a labelled reference AnnData otherwise."
        )
    labels = adata.obs[label_key]
    if labels.isna().any():
        raise ValueError(
            f"{int(labels.isna().sum())} cells have no {label_key!r}; drop them before cross-validating."
        )
    _check_reference(adata, query, f"adata.obsm[{use_rep!r}] (the reference in cross-validation)")
    votes, _ = cross_validated_votes(
        query, labels.astype(str).to_numpy(), folds=folds, random_state=random_state, k=k, **index_options
    )
    return votes


def _reference_votes(
    adata: AnnData,
    reference: AnnData,
    query: np.ndarray,
    label_key: str,
    use_rep: str,
    reference_rep: str,
    random_state: int,
    k: int,
    index_options: dict[str, Any],
) -> tuple[KnnVotes, int, str | None]:
    """Votes of the labelled ``reference`` cells; also their number and the reference's gene-table hash."""
    if label_key not in reference.obs:
        raise KeyError(f"reference.obs[{label_key!r}] not found; available: {list(reference.obs.columns)}.")
    ref = _embedding(reference, reference_rep, "reference")
    if ref.shape[1] != query.shape[1]:
        raise ValueError(
            f"reference.obsm[{reference_rep!r}] is {ref.shape[1]}-d but adata.obsm[{use_rep!r}] is "
            f"{query.shape[1]}-d: embed both with the same model."
        )
    ours, theirs = _table_hash(adata, use_rep), _table_hash(reference, reference_rep)
    if ours and theirs and ours != theirs:
        raise ValueError(
            f"adata and reference were embedded with different gene tables (content hashes {ours[:12]}... "
            f"and {theirs[:12]}...): their embeddings are not comparable. Embed both with the same table."
        )
    labels = reference.obs[label_key]
    keep = ~labels.isna().to_numpy()
    if not keep.all():
        warnings.warn(
            f"{int((~keep).sum())} reference cells have no {label_key!r} and are left out of the index.",
            UserWarning,
            stacklevel=3,
        )
    if not keep.any():
        raise ValueError(
            f"No reference cell has a {label_key!r} label: nothing to vote with. Pass a labelled reference."
        )
    _check_reference(reference[keep], ref[keep], f"reference.obsm[{reference_rep!r}]")
    votes = knn_votes(
        ref[keep], labels[keep].astype(str).to_numpy(), query, k=k, random_state=random_state, **index_options
    )
    return votes, int(keep.sum()), theirs


def _decide(
    adata: AnnData,
    votes: KnnVotes,
    query: np.ndarray,
    use_rep: str,
    metric: str,
    threshold: float | None,
    min_margin: float | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Labels and scores from the votes; cells that could not vote are ``"unknown"`` with a NaN score."""
    valid = votes.valid if votes.valid is not None else queryable(query, metric)
    decision = decide(
        np.where(valid[:, None], votes.probs, 0.0), votes.classes, threshold=threshold, min_margin=min_margin
    )
    labels, score = decision.labels.copy(), decision.score.astype(np.float32)
    n_bad = int((~valid).sum())
    if n_bad:
        # Such a cell has no neighbours: any label would be the index's arbitrary answer.
        labels[~valid] = UNKNOWN
        score[~valid] = np.nan
        what = "not finite" if metric != "cosine" else "not finite or all zeros"
        warnings.warn(
            f"{n_bad} of {adata.n_obs} cells have an embedding (obsm[{use_rep!r}]) that is {what} "
            f"({_names(adata, np.flatnonzero(~valid))}): they are labelled {UNKNOWN!r} with a NaN score.",
            UserWarning,
            stacklevel=3,
        )
    return labels, score, n_bad
