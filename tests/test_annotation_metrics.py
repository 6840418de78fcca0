"""``tl.annotation_metrics`` equals scikit-learn's accuracy, macro-F1 and per-class report."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

import scelmo as se


@pytest.fixture(scope="module")
def adata():
    adata = sc.datasets.pbmc68k_reduced()
    rng = np.random.default_rng(0)
    truth = adata.obs["bulk_labels"].astype(str).to_numpy()
    predicted = truth.copy()
    flip = rng.uniform(size=adata.n_obs) < 0.3
    predicted[flip] = rng.choice(sorted(set(truth)), size=flip.sum())
    predicted[rng.uniform(size=adata.n_obs) < 0.05] = "unknown"
    adata.obs["predicted"] = predicted
    return adata


def test_metrics_equal_sklearn(adata):
    truth = adata.obs["bulk_labels"].astype(str).to_numpy()
    predicted = adata.obs["predicted"].to_numpy()
    report = se.tl.annotation_metrics(adata, "bulk_labels", "predicted")
    classes = sorted(set(truth))
    assert report.accuracy == pytest.approx(accuracy_score(truth, predicted))
    assert report.macro_f1 == pytest.approx(f1_score(truth, predicted, average="macro", labels=classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0
    )
    np.testing.assert_allclose(report.per_class.loc[classes, "precision"], precision)
    np.testing.assert_allclose(report.per_class.loc[classes, "recall"], recall)
    np.testing.assert_allclose(report.per_class.loc[classes, "f1"], f1)
    np.testing.assert_array_equal(report.per_class.loc[classes, "support"], support)
    unknown = predicted == "unknown"
    assert report.n_unknown == unknown.sum()
    assert report.coverage == pytest.approx(1 - unknown.mean())
    assert report.accuracy_labelled == pytest.approx(accuracy_score(truth[~unknown], predicted[~unknown]))


def test_mapping_to_coarse_groups_and_array_input(adata):
    mapping = {"CD19+ B": "B cell", "CD56+ NK": "NK cell"}
    truth = adata.obs["bulk_labels"].astype(str).map(lambda v: mapping.get(v, "other")).to_numpy()
    predicted = np.where(adata.obs["bulk_labels"] == "CD19+ B", "B cell", "other")
    report = se.tl.annotation_metrics(
        adata.obs["bulk_labels"].astype(str).map(lambda v: v if v in mapping else "other"),
        predicted,
        mapping=mapping,
    )
    assert report.accuracy == pytest.approx(accuracy_score(truth, predicted))
    assert report.per_class.loc["NK cell", "recall"] == 0.0
    assert report.to_dict()["n_cells"] == adata.n_obs


def test_errors(adata):
    with pytest.raises(KeyError, match="nope"):
        se.tl.annotation_metrics(adata, "bulk_labels", "nope")
    with pytest.raises(ValueError, match="predictions"):
        se.tl.annotation_metrics(np.array(["a"]), np.array(["a", "b"]))
