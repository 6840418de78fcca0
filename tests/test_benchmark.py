"""``tl.benchmark``: each figure recomputed independently (scanpy Leiden + sklearn, sklearn kNN)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score, silhouette_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

import scelmo as se


@pytest.fixture(scope="module")
def pbmc():
    return sc.datasets.pbmc68k_reduced()


def test_without_batch_key(pbmc):
    adata = pbmc.copy()
    table = se.tl.benchmark(adata, ["X_pca", "X_umap"], "bulk_labels", resolutions=[0.6, 1.0])
    assert list(table.columns) == ["embedding", "metric_type", "metric", "value"]
    assert adata.uns["benchmark"]["results"] is table
    assert adata.uns["benchmark"]["params"]["backend"] == "leiden+silhouette"
    wide = table.pivot(index="metric", columns="embedding", values="value")
    labels = adata.obs["bulk_labels"].astype(str).to_numpy()
    x = adata.obsm["X_pca"]

    # Leiden at the reported best resolution, redone with scanpy and scored with sklearn
    work = sc.AnnData(obs=adata.obs[["bulk_labels"]].copy(), obsm={"X_pca": x})
    sc.pp.neighbors(work, use_rep="X_pca", n_neighbors=15, random_state=0)
    best = {}
    for resolution in (0.6, 1.0):
        sc.tl.leiden(
            work, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=0
        )
        best[resolution] = (
            normalized_mutual_info_score(labels, work.obs["leiden"]),
            adjusted_rand_score(labels, work.obs["leiden"]),
        )
    resolution = wide.loc["leiden_resolution", "X_pca"]
    assert best[resolution][0] == max(v[0] for v in best.values())
    assert wide.loc["leiden_nmi", "X_pca"] == pytest.approx(best[resolution][0])
    assert wide.loc["leiden_ari", "X_pca"] == pytest.approx(best[resolution][1])

    assert wide.loc["silhouette_label", "X_pca"] == pytest.approx((silhouette_score(x, labels) + 1) / 2)

    predicted = np.empty(len(labels), dtype=object)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, labels):
        model = KNeighborsClassifier(10, metric="cosine", algorithm="brute").fit(x[train], labels[train])
        predicted[test] = model.predict(x[test])
    assert wide.loc["knn10_accuracy", "X_pca"] == pytest.approx(np.mean(predicted == labels), abs=0.01)
    assert wide.loc["knn10_macro_f1", "X_pca"] == pytest.approx(
        f1_score(labels, predicted, average="macro"), abs=0.02
    )


def test_with_batch_key_uses_scib_metrics(pbmc):
    pytest.importorskip("scib_metrics")
    adata = pbmc.copy()
    adata.obs["batch"] = np.where(np.arange(adata.n_obs) % 2 == 0, "a", "b")
    table = se.tl.benchmark(
        adata,
        "X_pca",
        "bulk_labels",
        batch_key="batch",
        bio_metrics={"isolated_labels": False, "nmi_ari_cluster_labels_kmeans": False, "clisi_knn": False},
        batch_metrics={"bras": False, "ilisi_knn": False, "kbet_per_label": False, "pcr_comparison": False},
    )
    values = table.set_index("metric")["value"]
    assert set(table["metric_type"]) == {"bio_conservation", "batch_correction", "aggregate_score"}
    labels = adata.obs["bulk_labels"].astype(str)
    assert values["silhouette_label"] == pytest.approx(
        (silhouette_score(adata.obsm["X_pca"], labels) + 1) / 2, abs=0.01
    )
    assert 0 <= values["graph_connectivity"] <= 1
    assert values["Total"] == pytest.approx(
        0.6 * values["Bio conservation"] + 0.4 * values["Batch correction"]
    )
    assert adata.uns["benchmark"]["params"]["backend"] == "scib-metrics"


def test_errors(pbmc):
    with pytest.raises(KeyError, match="X_elmo"):
        se.tl.benchmark(pbmc, ["X_elmo"], "bulk_labels")
    with pytest.raises(KeyError, match="nope"):
        se.tl.benchmark(pbmc, ["X_pca"], "nope")
    adata = pbmc.copy()
    adata.obs["partial"] = (
        pd.Series(adata.obs["bulk_labels"].astype(str)).where(np.arange(adata.n_obs) > 5).to_numpy()
    )
    with pytest.raises(ValueError, match="drop them"):
        se.tl.benchmark(adata, ["X_pca"], "partial")
