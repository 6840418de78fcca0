"""``tl.benchmark``: how well embeddings keep cell types apart (and mix batches)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from anndata import AnnData

from scelmo._anndata import check_key
from scelmo._logging import logger
from scelmo._records import ElmoRecord
from scelmo.evaluation import benchmark_embeddings
from scelmo.gene_embeddings import GeneEmbeddings

from ._elmo_embed import elmo_embed


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
    control: bool = False,
    gene_embeddings: GeneEmbeddings | None = None,
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
    control
        Add two controls for every elmo embedding among ``embeddings`` (an ``obsm`` key whose
        ``uns`` record names a gene table, as :func:`~scelmo.tl.elmo_embed` writes): the same
        cells embedded with ``gene_embeddings.shuffled(random_state)`` (the table's vectors given
        to the wrong genes) and ``gene_embeddings.random_like(random_state)`` (Gaussian noise of
        the table's shape and scale), with the embedding's own options (mode, matrix). They are
        written to ``obsm[key + '_shuffled']`` and ``obsm[key + '_random']`` and scored like the
        rest. A gain over them is what the gene text adds; scELMo's paper found random gene
        embeddings about as good as GPT-3.5's after fine-tuning.
    gene_embeddings
        The gene table the elmo embeddings were made with (needed with ``control``; checked
        against the content hash in their ``uns`` record).
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
    embeddings = [embeddings] if isinstance(embeddings, str) else list(embeddings)
    if control:
        embeddings = [*embeddings, *_add_controls(adata, embeddings, gene_embeddings, random_state)]
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
        "control": control,
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


def _add_controls(
    adata: AnnData, embeddings: list[str], table: GeneEmbeddings | None, seed: int
) -> list[str]:
    """Embed the cells with the shuffled and random controls of ``table``; return the new keys."""
    if not isinstance(table, GeneEmbeddings):
        raise ValueError(
            "control=True needs gene_embeddings=, the gene table the elmo embeddings were made with "
            "(its shuffled and random controls are embedded the same way)."
        )
    elmo = [key for key in embeddings if ElmoRecord.matches(adata.uns.get(key))]
    if not elmo:
        raise ValueError(
            f"control=True: none of {embeddings} was written by scelmo.tl.elmo_embed (no uns[key]['gene_table'])."
        )
    added = []
    for key in elmo:
        record = ElmoRecord.read(adata, key)
        recorded = record.gene_table.get("content_hash")
        if recorded and recorded != table.content_hash:
            raise ValueError(
                f"obsm[{key!r}] was embedded with another gene table (content hash {recorded[:12]}...) "
                f"than the one passed ({table.content_hash[:12]}...)."
            )
        # The controls are embedded from the same matrix, with the same options.
        options = {
            "mode": record.params["mode"],
            "renormalize": bool(record.params["renormalize"]),
            "layer": record.layer,
            "use_raw": bool(record.use_raw),
        }
        for suffix, control in (("shuffled", table.shuffled(seed)), ("random", table.random_like(seed))):
            elmo_embed(adata, control, key_added=f"{key}_{suffix}", progress=False, **options)
            added.append(f"{key}_{suffix}")
    return added
