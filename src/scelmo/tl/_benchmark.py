"""``tl.benchmark``: how well embeddings keep cell types apart (and mix batches)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from anndata import AnnData

from .._anndata import check_key
from .._logging import logger
from ..annotation._benchmark import benchmark_embeddings


def benchmark(
    adata: AnnData,
    embeddings: str | Sequence[str],
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
    key_added: str = "benchmark",
) -> pd.DataFrame:
    """Score embeddings against known labels, as one tidy table.

    Without ``batch_key``: Leiden clusterings of each embedding's neighbour graph scored by
    NMI and ARI at the best resolution (0.2..2.0, as scELMo), the label silhouette
    (``(ASW + 1) / 2``, Euclidean, scib's convention) and, with ``knn_k``, out-of-fold kNN
    label transfer (stratified ``knn_folds``, cosine hnswlib index). With ``batch_key``:
    scib-metrics' ``Benchmarker`` (isolated labels, KMeans NMI/ARI, silhouette, cLISI;
    BRAS, iLISI, kBET, graph connectivity, PCR comparison).

    Parameters
    ----------
    adata
        Data with the embeddings in ``obsm`` and labels (and batches) in ``obs``.
    embeddings
        ``obsm`` keys to compare, e.g. ``["X_elmo", "X_pca"]``.
    label_key
        Column of true cell types.
    batch_key
        Column of batches; switches to scib-metrics (``pip install 'scelmo[bench]'``).
    resolutions
        Leiden resolutions to scan (default 0.2, 0.4, ..., 2.0).
    n_neighbors
        Neighbours of the graph Leiden runs on.
    knn_k
        Neighbours of the kNN transfer score (``None``: skip it).
    knn_folds
        Folds of the kNN transfer score.
    pre_integrated
        scib-metrics: the unintegrated embedding for PCR comparison (default: PCA of ``X``).
    n_jobs
        scib-metrics: parallel jobs.
    bio_metrics, batch_metrics
        scib-metrics: switches of ``BioConservation`` and ``BatchCorrection`` (for example
        ``{"kbet_per_label": False}`` to skip the slowest metric); default: scib-metrics' own.
    random_state
        Seed of the neighbour graph, Leiden and folds.
    key_added
        The table is stored in ``adata.uns[key_added]``.

    Returns
    -------
    A DataFrame with one row per embedding and metric: ``embedding``, ``metric_type``
    (``bio_conservation``, ``batch_correction``, ``aggregate_score``, ``label_transfer`` or
    ``info``), ``metric``, ``value``. Also stored in ``adata.uns[key_added]`` as
    ``{"results": table, "params": {...}}``.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.tl.benchmark(adata, ["X_pca"], "bulk_labels", resolutions=[0.5, 1.0])
    >>> bool(table.pivot(index="metric", columns="embedding", values="value").loc["leiden_nmi", "X_pca"] > 0.4)
    True
    """
    check_key(key_added)
    table = benchmark_embeddings(
        adata,
        embeddings,
        label_key,
        batch_key,
        resolutions=resolutions,
        n_neighbors=n_neighbors,
        knn_k=knn_k,
        knn_folds=knn_folds,
        pre_integrated=pre_integrated,
        n_jobs=n_jobs,
        bio_metrics=bio_metrics,
        batch_metrics=batch_metrics,
        random_state=random_state,
    )
    params = {
        "label_key": label_key,
        "batch_key": batch_key or "",
        "embeddings": list(table["embedding"].unique()),
        "n_neighbors": n_neighbors,
        "knn_k": knn_k or 0,
        "knn_folds": knn_folds,
        "random_state": random_state,
        "backend": "scib-metrics" if batch_key else "leiden+silhouette",
    }
    adata.uns[key_added] = {"results": table, "params": params}
    logger.info(
        "added uns[%r] (%d embeddings x %d metrics)",
        key_added,
        table["embedding"].nunique(),
        table["metric"].nunique(),
    )
    return table
