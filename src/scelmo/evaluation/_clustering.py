"""Leiden clusterings of an embedding scored against known labels (NMI, ARI at the best resolution).

This follows scELMo's evaluation: Leiden clusterings of the embedding's neighbour graph at
resolutions 0.2..2.0, scored by NMI and ARI; the best by NMI is reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from anndata import AnnData

__all__ = ["DEFAULT_RESOLUTIONS", "ClusteringScore", "leiden_scores", "neighbor_graph"]

#: Resolutions scanned for the best Leiden clustering, as in scELMo's evaluation.
DEFAULT_RESOLUTIONS = tuple(round(0.2 * i, 1) for i in range(1, 11))


@dataclass(frozen=True)
class ClusteringScore:
    """NMI and ARI of the best Leiden clustering and the resolution that gave it."""

    nmi: float
    ari: float
    resolution: float
    n_clusters: int


def leiden_scores(
    adata: AnnData,
    label_key: str,
    *,
    use_rep: str,
    resolutions: Sequence[float] = DEFAULT_RESOLUTIONS,
    n_neighbors: int = 15,
    random_state: int = 0,
) -> ClusteringScore:
    """Leiden clusterings of ``use_rep`` scored against ``obs[label_key]``; the best by NMI.

    Parameters
    ----------
    adata
        Data with the embedding in ``obsm[use_rep]`` and labels in ``obs[label_key]``.
    label_key
        Column of true labels.
    use_rep
        Embedding to build the neighbour graph from.
    resolutions
        Leiden resolutions to try.
    n_neighbors
        Neighbours of the graph.
    random_state
        Seed of neighbours and Leiden.

    Returns
    -------
    The scores of the resolution with the highest NMI (ARI reported for that clustering).

    Examples
    --------
    >>> import scanpy as sc
    >>> from scelmo.evaluation import leiden_scores
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> leiden_scores(adata, "bulk_labels", use_rep="X_pca").nmi > 0.4
    True
    """
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    work = AnnData(obs=adata.obs[[label_key]].copy(), obsm={use_rep: np.asarray(adata.obsm[use_rep])})
    neighbor_graph(work, use_rep=use_rep, n_neighbors=n_neighbors, random_state=random_state)
    labels = work.obs[label_key].astype(str).to_numpy()
    best: ClusteringScore | None = None
    for resolution in resolutions:
        sc.tl.leiden(
            work,
            resolution=float(resolution),
            key_added="_leiden",
            random_state=random_state,
            flavor="igraph",
            n_iterations=2,
            directed=False,
        )
        clusters = work.obs["_leiden"].to_numpy()
        score = ClusteringScore(
            nmi=float(normalized_mutual_info_score(labels, clusters)),
            ari=float(adjusted_rand_score(labels, clusters)),
            resolution=float(resolution),
            n_clusters=len(np.unique(clusters)),
        )
        if best is None or score.nmi > best.nmi:
            best = score
    if best is None:
        raise ValueError("No resolution to try: pass at least one Leiden resolution.")
    return best


def neighbor_graph(adata: AnnData, **kwargs: object) -> None:
    """``sc.pp.neighbors``; an environment that cannot build the graph gets an error naming the fix.

    scanpy (1.11 and 1.12) reads the distances of its kNN transformer with ``getnnz``, which
    scipy's sparse arrays lost in 1.14, and pynndescent >= 0.7 (the transformer from 8,192 cells
    on) returns sparse arrays. scelmo requires ``pynndescent<0.7``, but an environment changed
    after installing scelmo can still hold the three together.

    Parameters
    ----------
    adata
        Passed to ``sc.pp.neighbors``, which writes the graph into it.
    **kwargs
        Options of ``sc.pp.neighbors``.

    Examples
    --------
    >>> import scanpy as sc
    >>> from scelmo.evaluation import neighbor_graph
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> neighbor_graph(adata, use_rep="X_pca", n_neighbors=10)
    >>> "connectivities" in adata.obsp
    True
    """
    import scanpy as sc

    try:
        sc.pp.neighbors(adata, **kwargs)
    except AttributeError as err:
        if "getnnz" not in str(err):
            raise
        raise RuntimeError(
            "scanpy could not build the neighbour graph: it cannot read the sparse arrays that "
            "pynndescent >= 0.7 returns (scipy >= 1.14 removed their `getnnz`); scanpy uses pynndescent "
            "from 8,192 cells on. Install the pynndescent scelmo requires: pip install 'pynndescent<0.7'"
        ) from err
