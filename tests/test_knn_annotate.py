"""``tl.knn_annotate``: hnswlib votes against scikit-learn's exact kNN on real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

import scelmo as se
from scelmo.annotation import HnswIndex


@pytest.fixture(scope="module")
def pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    return adata


def _sklearn_votes(reference, labels, queries, k, weights):
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", weights=weights)
    model.fit(reference, labels)
    return model.classes_, model.predict_proba(queries)


def test_index_neighbours_equal_exact_search(pbmc):
    data = pbmc.obsm["X_pca"]
    index = HnswIndex(data, ef=200)
    neighbours, distances = index.query(data[:100], k=10)
    exact = NearestNeighbors(n_neighbors=10, metric="cosine", algorithm="brute").fit(data)
    exact_distances, exact_neighbours = exact.kneighbors(data[:100])
    np.testing.assert_array_equal(neighbours, exact_neighbours)
    np.testing.assert_allclose(distances, exact_distances, atol=1e-5)
    euclidean = HnswIndex(data, metric="euclidean", ef=200).query(data[:5], k=3)[1]
    reference = NearestNeighbors(n_neighbors=3).fit(data).kneighbors(data[:5])[0]
    np.testing.assert_allclose(euclidean, reference, atol=1e-4)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_reference_votes_equal_sklearn(pbmc, weights):
    reference, query = pbmc[:500].copy(), pbmc[500:].copy()
    se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca", weights=weights, ef=200)
    classes, expected = _sklearn_votes(
        reference.obsm["X_pca"], reference.obs["bulk_labels"].astype(str), query.obsm["X_pca"], 10, weights
    )
    assert query.uns["knn"]["classes"] == list(classes)
    np.testing.assert_allclose(query.obsm["knn_probs"], expected, atol=1e-5)
    np.testing.assert_array_equal(query.obs["knn"].astype(str), classes[expected.argmax(1)])
    np.testing.assert_allclose(query.obs["knn_score"], expected.max(1), atol=1e-5)
    params = query.uns["knn"]["params"]
    assert (params["M"], params["ef_construction"], params["mode"]) == (16, 200, "reference")


def test_cross_validated_mode_equals_sklearn_folds(pbmc):
    adata = pbmc.copy()
    se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca", ef=200, folds=5, random_state=0)
    labels = adata.obs["bulk_labels"].astype(str).to_numpy()
    x = adata.obsm["X_pca"]
    expected = np.empty(adata.n_obs, dtype=object)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, labels):
        classes, probs = _sklearn_votes(x[train], labels[train], x[test], 10, "uniform")
        expected[test] = classes[probs.argmax(1)]
    np.testing.assert_array_equal(adata.obs["knn"].astype(str).to_numpy(), expected)
    report = se.tl.annotation_metrics(adata, "bulk_labels", "knn")
    assert report.accuracy == pytest.approx(0.824, abs=0.03)  # the 5-fold 10-NN PCA figure
    assert adata.uns["knn"]["params"]["mode"] == "cross_validated"


def test_abstention_and_copy(pbmc):
    out = se.tl.knn_annotate(
        pbmc, None, "bulk_labels", use_rep="X_pca", threshold=0.7, copy=True, key_added="k"
    )
    assert "k" not in pbmc.obs
    low = out.obs["k_score"] < 0.7
    assert low.any()
    assert (out.obs.loc[low, "k"] == "unknown").all()
    assert (out.obs.loc[~low, "k"] != "unknown").all()
    assert out.uns["k"]["n_unknown"] == int(low.sum())


def test_errors(pbmc):
    with pytest.raises(KeyError, match=r"obsm\['X_elmo'\] not found"):
        se.tl.knn_annotate(pbmc, None, "bulk_labels")
    with pytest.raises(KeyError, match="needs labels"):
        se.tl.knn_annotate(pbmc, None, "nope", use_rep="X_pca")
    query = pbmc.copy()
    query.obsm["X_small"] = query.obsm["X_pca"][:, :5]
    with pytest.raises(ValueError, match="same model"):
        se.tl.knn_annotate(query, pbmc, "bulk_labels", use_rep="X_small", reference_rep="X_pca")
    other = pbmc.copy()
    query.uns["X_pca"], other.uns["X_pca"] = (
        {"gene_table": {"content_hash": "a" * 64}},
        {"gene_table": {"content_hash": "b" * 64}},
    )
    with pytest.raises(ValueError, match="different gene tables"):
        se.tl.knn_annotate(query, other, "bulk_labels", use_rep="X_pca")
    with pytest.raises(ValueError, match="fewer cells than folds"):
        se.tl.knn_annotate(pbmc, None, "bulk_labels", use_rep="X_pca", folds=10)


def test_k_larger_than_the_reference_is_lowered_with_a_warning(pbmc):
    reference, query = pbmc[:12].copy(), pbmc[500:].copy()
    with pytest.warns(UserWarning, match=r"k=50 is more than the 12 reference cells: using k=12"):
        se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca", k=50)
    classes, expected = _sklearn_votes(
        reference.obsm["X_pca"], reference.obs["bulk_labels"].astype(str), query.obsm["X_pca"], 12, "uniform"
    )
    assert query.uns["knn"]["classes"] == list(classes)
    np.testing.assert_allclose(query.obsm["knn_probs"], expected, atol=1e-6)
    assert query.uns["knn"]["params"]["k"] == 50
    assert query.uns["knn"]["params"]["k_used"] == 12
    unlabelled = reference.copy()
    unlabelled.obs["bulk_labels"] = pd.Series(np.nan, index=unlabelled.obs_names, dtype=object)
    with (
        pytest.raises(ValueError, match="No reference cell has a 'bulk_labels' label"),
        pytest.warns(UserWarning, match="12 reference cells have no"),
    ):
        se.tl.knn_annotate(query, unlabelled, "bulk_labels", use_rep="X_pca")


def test_cells_with_non_finite_vectors_are_never_labelled(pbmc):
    reference, query = pbmc[:500].copy(), pbmc[500:520].copy()
    query.obsm["X_pca"][[1, 4]] = np.nan
    query.obsm["X_pca"][7, 3] = np.inf
    query.obsm["X_pca"][9] = 0.0  # cosine distance is undefined for a zero vector
    clean = pbmc[500:520].copy()
    se.tl.knn_annotate(clean, reference, "bulk_labels", use_rep="X_pca")
    with pytest.warns(
        UserWarning,
        match=r"4 of 20 cells have an embedding \(obsm\['X_pca'\]\) that is not finite or all zeros",
    ):
        se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca")
    bad = np.zeros(20, dtype=bool)
    bad[[1, 4, 7, 9]] = True
    assert (query.obs["knn"][bad] == "unknown").all()
    assert query.obs["knn_score"][bad].isna().all()
    assert np.isnan(query.obsm["knn_probs"][bad]).all()
    assert query.uns["knn"]["n_not_finite"] == 4
    assert query.uns["knn"]["n_unknown"] == 4
    # The other cells are labelled exactly as without the bad ones.
    np.testing.assert_array_equal(query.obs["knn"][~bad].astype(str), clean.obs["knn"][~bad].astype(str))
    np.testing.assert_allclose(query.obsm["knn_probs"][~bad], clean.obsm["knn_probs"][~bad])


def test_a_reference_with_non_finite_vectors_is_refused(pbmc):
    reference, query = pbmc[:500].copy(), pbmc[500:].copy()
    reference.obsm["X_pca"][[3, 8]] = np.nan
    with pytest.raises(
        ValueError,
        match=r"reference\.obsm\['X_pca'\] has NaN or infinite values in 2 of 500 reference cells \(",
    ) as err:
        se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca")
    assert repr(reference.obs_names[3]) in str(err.value)
    assert "knn" not in query.obs
    selfref = pbmc.copy()
    selfref.obsm["X_pca"][0, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"the reference in cross-validation\) has NaN or infinite values in 1 of 700"
    ):
        se.tl.knn_annotate(selfref, None, "bulk_labels", use_rep="X_pca")
