"""Scores of cell embeddings against known labels (and batches), as one tidy table.

Without a batch key: Leiden clustering scored by NMI and ARI at the best of resolutions
0.2..2.0 (as scELMo), the label silhouette (scib's convention: ``(ASW + 1) / 2``, Euclidean),
and optionally out-of-fold kNN label transfer. With a batch key: scib-metrics' ``Benchmarker``
(bio conservation and batch correction).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo._neighbors import HnswIndex, cross_validated_votes
from scelmo._optional import import_optional

from ._clustering import DEFAULT_RESOLUTIONS, leiden_scores

__all__ = ["COLUMNS", "benchmark_embeddings"]

COLUMNS = ["embedding", "metric_type", "metric", "value"]


def _rows(embedding: str, metric_type: str, values: dict[str, float]) -> list[dict[str, object]]:
    return [
        {"embedding": embedding, "metric_type": metric_type, "metric": metric, "value": float(value)}
        for metric, value in values.items()
    ]


def _without_batch(
    adata: AnnData,
    embedding: str,
    label_key: str,
    *,
    resolutions: Sequence[float],
    n_neighbors: int,
    knn_k: int | None,
    knn_folds: int,
    random_state: int,
) -> list[dict[str, object]]:
    from sklearn.metrics import f1_score, silhouette_score

    labels = adata.obs[label_key].astype(str).to_numpy()
    vectors = np.asarray(adata.obsm[embedding], dtype=np.float64)
    clustering = leiden_scores(
        adata,
        label_key,
        use_rep=embedding,
        resolutions=resolutions,
        n_neighbors=n_neighbors,
        random_state=random_state,
    )
    rows = _rows(embedding, "bio_conservation", {"leiden_nmi": clustering.nmi, "leiden_ari": clustering.ari})
    rows += _rows(
        embedding,
        "info",
        {"leiden_resolution": clustering.resolution, "leiden_n_clusters": clustering.n_clusters},
    )
    asw = silhouette_score(vectors, labels, metric="euclidean")
    rows += _rows(embedding, "bio_conservation", {"silhouette_label": (asw + 1) / 2})
    if knn_k:
        votes, _ = cross_validated_votes(vectors, labels, folds=knn_folds, random_state=random_state, k=knn_k)
        predicted = np.asarray(votes.classes)[votes.probs.argmax(axis=1)]
        rows += _rows(
            embedding,
            "label_transfer",
            {
                f"knn{knn_k}_accuracy": float(np.mean(predicted == labels)),
                f"knn{knn_k}_macro_f1": f1_score(labels, predicted, average="macro"),
            },
        )
    return rows


def _hnsw_neighbors(data: np.ndarray, n_neighbors: int):
    """Euclidean neighbours (each point first) for scib-metrics, from our hnswlib index.

    scib-metrics' default (pynndescent) spends a minute compiling before its first call.
    """
    from scib_metrics.nearest_neighbors import NeighborsResults

    n_neighbors = min(n_neighbors, data.shape[0])
    index = HnswIndex(data, metric="euclidean", ef=max(2 * n_neighbors, 100))
    indices, distances = index.query(data, n_neighbors)
    return NeighborsResults(indices=indices, distances=distances.astype(np.float32))


def _with_batch(
    adata: AnnData,
    embeddings: list[str],
    label_key: str,
    batch_key: str,
    *,
    pre_integrated: str | None,
    n_jobs: int,
    bio_metrics: dict[str, object] | None,
    batch_metrics: dict[str, object] | None,
) -> list[dict[str, object]]:
    benchmark = import_optional("scib_metrics.benchmark", "bench", purpose="benchmark(batch_key=...)")
    work = AnnData(
        X=adata.X,
        obs=adata.obs[[label_key, batch_key]].copy(),
        obsm={
            key: np.asarray(adata.obsm[key])
            for key in {*embeddings, *([pre_integrated] if pre_integrated else [])}
        },
    )
    runner = benchmark.Benchmarker(
        work,
        batch_key=batch_key,
        label_key=label_key,
        embedding_obsm_keys=embeddings,
        pre_integrated_embedding_obsm_key=pre_integrated,
        bio_conservation_metrics=benchmark.BioConservation(**(bio_metrics or {})),
        batch_correction_metrics=benchmark.BatchCorrection(**(batch_metrics or {})),
        n_jobs=n_jobs,
        progress_bar=False,
    )
    with warnings.catch_warnings():
        # scib-metrics calls scanpy's PCA with an argument scanpy deprecates: not ours to fix.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*use_highly_variable.*")
        runner.prepare(neighbor_computer=_hnsw_neighbors)
        runner.benchmark()
    wide = runner.get_results(min_max_scale=False, clean_names=False)
    types = wide.loc["Metric Type"] if "Metric Type" in wide.index else pd.Series("", index=wide.columns)
    rows = []
    for embedding in embeddings:
        for metric in wide.columns:
            metric_type = str(types[metric]).lower().replace(" ", "_") or "scib"
            rows.append(
                {
                    "embedding": embedding,
                    "metric_type": metric_type,
                    "metric": str(metric),
                    "value": float(wide.loc[embedding, metric]),
                }
            )
    return rows


def benchmark_embeddings(
    adata: AnnData,
    embeddings: Sequence[str],
    label_key: str,
    batch_key: str | None = None,
    *,
    resolutions: Sequence[float] | None = None,
    n_neighbors: int = 15,
    knn_k: int | None = 10,
    knn_folds: int = 5,
    pre_integrated: str | None = None,
    n_jobs: int = 1,
    bio_metrics: dict[str, object] | None = None,
    batch_metrics: dict[str, object] | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """The tidy table of :func:`scelmo.tl.benchmark` (not stored).

    Parameters
    ----------
    adata
        Cells with the embeddings in ``obsm`` and labels (and batches) in ``obs``.
    embeddings
        ``obsm`` keys to score.
    label_key, batch_key
        ``obs`` columns of the true labels and (optionally) the batches.
    resolutions, n_neighbors
        Leiden resolutions (default 0.2..2.0) and neighbours of the graph (without batches).
    knn_k, knn_folds
        Out-of-fold kNN label transfer (``knn_k=None``: skipped), without batches.
    pre_integrated, n_jobs, bio_metrics, batch_metrics
        Options of scib-metrics' ``Benchmarker`` (with batches).
    random_state
        Seed of the graph, Leiden and the folds.

    Returns
    -------
    One row per embedding and metric: columns ``embedding``, ``metric_type``, ``metric``, ``value``.

    Examples
    --------
    >>> import scanpy as sc
    >>> from scelmo.evaluation import benchmark_embeddings
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = benchmark_embeddings(adata, ["X_pca"], "bulk_labels", knn_k=None, resolutions=[1.0])
    >>> sorted(table["metric"])
    ['leiden_ari', 'leiden_n_clusters', 'leiden_nmi', 'leiden_resolution', 'silhouette_label']
    """
    embeddings = [embeddings] if isinstance(embeddings, str) else list(embeddings)
    if not embeddings:
        raise ValueError("No embedding to benchmark: pass obsm keys, e.g. ['X_elmo', 'X_pca'].")
    missing = [key for key in embeddings if key not in adata.obsm]
    if missing:
        raise KeyError(f"adata.obsm has no {missing}; available: {list(adata.obsm)}.")
    for key in (label_key, batch_key):
        if key is not None and key not in adata.obs:
            raise KeyError(f"adata.obs[{key!r}] not found; available: {list(adata.obs.columns)}.")
    if adata.obs[label_key].isna().any():
        raise ValueError(
            f"{int(adata.obs[label_key].isna().sum())} cells have no {label_key!r}; drop them first."
        )
    if batch_key is not None:
        rows = _with_batch(
            adata,
            embeddings,
            label_key,
            batch_key,
            pre_integrated=pre_integrated,
            n_jobs=n_jobs,
            bio_metrics=bio_metrics,
            batch_metrics=batch_metrics,
        )
    else:
        rows = []
        for embedding in embeddings:
            rows += _without_batch(
                adata,
                embedding,
                label_key,
                resolutions=DEFAULT_RESOLUTIONS if resolutions is None else resolutions,
                n_neighbors=n_neighbors,
                knn_k=knn_k,
                knn_folds=knn_folds,
                random_state=random_state,
            )
    return pd.DataFrame(rows, columns=COLUMNS)
