"""``scelmo.evaluation`` and the one kNN (``scelmo._neighbors``) against scikit-learn; old import paths."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from scelmo import _neighbors, evaluation


@pytest.fixture(scope="module")
def pbmc():
    return sc.datasets.pbmc68k_reduced()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_cross_validated_equals_sklearn_folds(pbmc, dtype):
    x = pbmc.obsm["X_pca"].astype(dtype)
    labels = pbmc.obs["bulk_labels"].astype(str).to_numpy()
    predicted = np.empty(len(labels), dtype=object)
    for train, test in StratifiedKFold(3, shuffle=True, random_state=1).split(x, labels):
        model = KNeighborsClassifier(7, metric="cosine", algorithm="brute").fit(x[train], labels[train])
        predicted[test] = model.predict(x[test])
    score = evaluation.knn_cross_validated(x, labels, k=7, folds=3, random_state=1)
    assert score.accuracy == np.mean(predicted == labels)
    assert score.macro_f1 == pytest.approx(
        f1_score(labels, predicted.astype(str), average="macro"), abs=1e-12
    )
    assert (score.k, score.folds) == (7, 3)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_neighbors_equal_sklearn(pbmc, metric):
    data = pbmc.obsm["X_pca"].astype(np.float64)
    found, distances = _neighbors.exact_neighbors(data, data[:50], 5, metric=metric, block=7)
    expected_distances, expected = (
        NearestNeighbors(n_neighbors=5, metric=metric).fit(data).kneighbors(data[:50])
    )
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(distances, expected_distances, atol=1e-6)
    inner = _neighbors.exact_neighbors(data, data[:3], 2, metric="ip")
    dots = data[:3] @ data.T
    np.testing.assert_array_equal(inner[0], np.argsort(-dots, axis=1)[:, :2])
    np.testing.assert_allclose(inner[1], 1 - np.sort(dots, axis=1)[:, ::-1][:, :2])


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_exact_votes_equal_sklearn_probabilities(pbmc, weights):
    x, labels = pbmc.obsm["X_pca"], pbmc.obs["bulk_labels"].astype(str).to_numpy()
    votes = _neighbors.knn_votes(x[:500], labels[:500], x[500:], k=10, weights=weights, search="exact")
    model = KNeighborsClassifier(10, metric="cosine", algorithm="brute", weights=weights).fit(
        x[:500], labels[:500]
    )
    assert votes.classes == list(model.classes_)
    np.testing.assert_allclose(votes.probs, model.predict_proba(x[500:]), atol=1e-6)


def test_knn_vote_counts_and_accuracy_of_numpy_arrays():
    reference = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    queries = np.array([[1.0, 0.05], [0.05, 1.0]])
    counts = _neighbors.knn_vote(queries, reference, np.array([0, 0, 1, 1]), k=3, n_labels=2)
    assert counts.tolist() == [[2, 1], [1, 2]]
    assert (
        _neighbors.knn_accuracy(queries, np.array([0, 0]), reference, np.array([0, 0, 1, 1]), k=3, n_labels=2)
        == 0.5
    )


def test_scelmo_metrics_still_works_with_a_deprecation_warning(pbmc):
    import scelmo.metrics

    for name in (
        "leiden_scores",
        "knn_cross_validated",
        "ClusteringScore",
        "KnnScore",
        "DEFAULT_RESOLUTIONS",
    ):
        with pytest.warns(DeprecationWarning, match=f"scelmo.evaluation.{name}"):
            assert getattr(scelmo.metrics, name) is getattr(evaluation, name)
    with pytest.warns(DeprecationWarning, match="scelmo.evaluation.neighbor_graph"):
        from scelmo.metrics import _neighbors as old_graph
    assert old_graph is evaluation.neighbor_graph
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        scelmo.metrics.nope  # noqa: B018


def test_annotation_keeps_its_names_without_warnings():
    import scelmo.annotation as annotation
    from scelmo.annotation import UNKNOWN

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert annotation.annotation_metrics is evaluation.annotation_metrics
        assert annotation.AnnotationReport is evaluation.AnnotationReport
        assert annotation.benchmark_embeddings is evaluation.benchmark_embeddings
        assert annotation.cross_validated_votes is _neighbors.cross_validated_votes
        assert annotation.HnswIndex is _neighbors.HnswIndex
    # evaluation does not import annotation; its abstention label is annotation's.
    assert inspect.signature(evaluation.annotation_metrics).parameters["unknown_label"].default == UNKNOWN


def test_the_adapter_votes_with_the_one_knn():
    pytest.importorskip("torch")
    pytest.importorskip("lightning")
    from scelmo.models.elmo_adapter import _training_plan

    assert _training_plan.knn_vote is _neighbors.knn_vote
    assert _training_plan.knn_accuracy is _neighbors.knn_accuracy
