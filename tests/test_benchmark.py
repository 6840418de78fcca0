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


# --- controls --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gene_table(pbmc):
    genes = pbmc.raw.var_names
    vectors = np.random.default_rng(7).normal(size=(len(genes), 16)) + np.linspace(0, 3, len(genes))[:, None]
    return se.GeneEmbeddings(genes, vectors, provenance={"text_source": "test"})


def test_shuffled_permutes_rows_and_random_like_keeps_shape_and_scale(gene_table):
    control = gene_table.shuffled(seed=3)
    order = np.random.default_rng(3).permutation(len(gene_table))
    np.testing.assert_array_equal(control.vectors, gene_table.vectors[order])
    assert control.genes.equals(gene_table.genes)
    assert not np.array_equal(control.vectors, gene_table.vectors)
    assert control.provenance == {
        "text_source": "test",
        "control": "shuffled",
        "control_seed": 3,
        "control_of": gene_table.content_hash,
    }
    assert control == gene_table.shuffled(seed=3)
    assert control != gene_table.shuffled(seed=4)

    noise = gene_table.random_like(seed=3)
    assert noise.vectors.shape == gene_table.vectors.shape
    assert noise.provenance["control"] == "random"
    np.testing.assert_allclose(noise.vectors.std(), gene_table.vectors.std(), rtol=0.05)
    assert abs(noise.vectors.mean()) < 0.05 * gene_table.vectors.std()
    # no trace of the table: the control's rows do not follow the table's gene-wise trend
    assert abs(np.corrcoef(noise.vectors.mean(axis=1), gene_table.vectors.mean(axis=1))[0, 1]) < 0.1
    np.testing.assert_array_equal(noise.vectors, gene_table.random_like(seed=3).vectors)


def test_benchmark_control_rows_are_the_controls_embedded_the_same_way(pbmc, gene_table):
    adata = pbmc.copy()
    se.tl.elmo_embed(adata, gene_table, mode="aa", progress=False)
    table = se.tl.benchmark(
        adata,
        "X_elmo",
        "bulk_labels",
        resolutions=[1.0],
        control=True,
        gene_embeddings=gene_table,
        random_state=2,
    )
    assert set(table["embedding"]) == {"X_elmo", "X_elmo_shuffled", "X_elmo_random"}
    assert adata.uns["benchmark"]["params"]["control"] is True
    for suffix, control in (("shuffled", gene_table.shuffled(2)), ("random", gene_table.random_like(2))):
        expected = se.tl.elmo_embed(adata, control, mode="aa", progress=False, copy=True).obsm["X_elmo"]
        np.testing.assert_allclose(adata.obsm[f"X_elmo_{suffix}"], expected, rtol=1e-6)
        assert adata.uns[f"X_elmo_{suffix}"]["params"]["mode"] == "aa"


def test_benchmark_control_needs_the_table_it_was_embedded_with(pbmc, gene_table):
    adata = pbmc.copy()
    se.tl.elmo_embed(adata, gene_table, progress=False)
    with pytest.raises(ValueError, match="needs gene_embeddings="):
        se.tl.benchmark(adata, ["X_elmo"], "bulk_labels", control=True)
    with pytest.raises(ValueError, match="another gene table"):
        se.tl.benchmark(
            adata, ["X_elmo"], "bulk_labels", control=True, gene_embeddings=gene_table.shuffled(1)
        )
    with pytest.raises(ValueError, match="none of"):
        se.tl.benchmark(adata, ["X_pca"], "bulk_labels", control=True, gene_embeddings=gene_table)
