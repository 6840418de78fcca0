"""The shared output format, abstention, threshold calibration and ontology-aware answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData, read_h5ad

from scelmo.annotation import AnnotationResult, calibrate_threshold, decide, write_annotation

CLASSES = ["B cell", "naive T cell", "memory T cell"]
IDS = {"B cell": "CL:0000236", "naive T cell": "CL:0000898", "memory T cell": "CL:0000813"}
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # clear B cell
        [0.10, 0.48, 0.42],  # T cell, subtype unclear (gap 0.06)
        [0.40, 0.30, 0.30],  # weak everywhere
        [0.05, 0.15, 0.80],  # clear memory T cell
    ]
)


def test_threshold_and_margin_give_the_expected_labels():
    assert decide(PROBS, CLASSES).labels.tolist() == ["B cell", "naive T cell", "B cell", "memory T cell"]
    by_score = decide(PROBS, CLASSES, threshold=0.45)
    assert by_score.labels.tolist() == ["B cell", "naive T cell", "unknown", "memory T cell"]
    np.testing.assert_allclose(by_score.score, [0.90, 0.48, 0.40, 0.80], rtol=1e-6)
    by_margin = decide(PROBS, CLASSES, min_margin=0.15)
    assert by_margin.labels.tolist() == ["B cell", "unknown", "unknown", "memory T cell"]
    np.testing.assert_allclose(by_margin.margin, [0.85, 0.06, 0.10, 0.65], rtol=1e-5)


def test_close_calls_become_the_common_ontology_ancestor():
    decision = decide(PROBS, CLASSES, ontology_gap=0.1, class_ontology=IDS)
    # cell 1: naive and memory T cell within 0.1 -> their nearest common ancestor, score summed
    assert decision.labels[1] == "mature T cell"
    assert decision.ancestor_ids[1] == "CL:0002419"
    assert decision.score[1] == pytest.approx(0.90)
    # cell 2: all three classes within 0.1 -> lymphocyte
    assert decision.labels[2] == "lymphocyte"
    assert decision.labels[[0, 3]].tolist() == ["B cell", "memory T cell"]
    # the ancestor's summed score passes a threshold the single class missed; margins do not apply to it
    kept = decide(PROBS, CLASSES, ontology_gap=0.1, class_ontology=IDS, threshold=0.7, min_margin=0.1)
    assert kept.labels.tolist() == ["B cell", "mature T cell", "lymphocyte", "memory T cell"]
    with pytest.raises(ValueError, match="celltype_descriptions"):
        decide(PROBS, CLASSES, ontology_gap=0.1)


def test_decide_rejects_bad_input():
    with pytest.raises(ValueError, match="probability"):
        decide(PROBS, CLASSES, threshold=2)
    with pytest.raises(ValueError, match=r"\(n_cells, 2\)"):
        decide(PROBS, CLASSES[:2])


def test_calibrate_threshold_against_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=300).round(2)  # ties on purpose
    correct = rng.uniform(size=300) < scores  # confident cells are right more often
    threshold = calibrate_threshold(scores, correct, target_accuracy=0.8)
    candidates = [t for t in np.unique(scores) if correct[scores >= t].mean() >= 0.8]
    assert threshold == pytest.approx(min(candidates))
    kept = calibrate_threshold(scores, keep_fraction=0.25)
    assert (scores >= kept).mean() >= 0.25
    assert (scores > kept).mean() < 0.25
    assert calibrate_threshold([0.5, 0.4], [False, False], target_accuracy=0.9) == 1.0
    with pytest.raises(ValueError, match="exactly one"):
        calibrate_threshold(scores, correct, target_accuracy=0.9, keep_fraction=0.5)
    with pytest.raises(ValueError, match="needs `correct`"):
        calibrate_threshold(scores, target_accuracy=0.9)


def test_writer_fields_and_h5ad_round_trip(tmp_path):
    adata = AnnData(np.zeros((4, 2), dtype=np.float32))
    decision = decide(PROBS, CLASSES, threshold=0.45, ontology_gap=0.07, class_ontology=IDS)
    result = AnnotationResult(
        method="langcell",
        classes=CLASSES,
        probs=PROBS,
        labels=decision.labels,
        score=decision.score,
        texts={c: [f"cell type: {c}."] for c in CLASSES},
        ontology=IDS,
        params={"alpha": 0.1, "unused": None},
        provenance={"checkpoint": "folder"},
        checkpoint_hash="abc123",
    )
    write_annotation(adata, result, "cta")
    assert adata.obs["cta"].tolist() == ["B cell", "mature T cell", "unknown", "memory T cell"]
    assert list(adata.obs["cta"].cat.categories) == [*CLASSES, "mature T cell", "unknown"]
    assert adata.obs["cta_score"].dtype == np.float32
    np.testing.assert_allclose(adata.obsm["cta_probs"], PROBS, rtol=1e-6)
    uns = adata.uns["cta"]
    assert uns["method"] == "langcell"
    assert uns["classes"] == CLASSES
    assert uns["checkpoint_hash"] == "abc123"
    assert uns["ontology"] == IDS
    assert (uns["n_unknown"], uns["n_ancestor"]) == (1, 1)
    assert uns["params"] == {"alpha": 0.1}
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["cta"]["texts"]["B cell"].tolist() == ["cell type: B cell."]
    pd.testing.assert_series_equal(back.obs["cta"], adata.obs["cta"])


def test_result_validation():
    with pytest.raises(ValueError, match="one column per class"):
        AnnotationResult("x", ["a", "b"], np.ones((3, 3)))
    with pytest.raises(ValueError, match="unique"):
        AnnotationResult("x", ["a", "a"], np.ones((3, 2)))
    adata = AnnData(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="2 cells"):
        write_annotation(adata, AnnotationResult("x", ["a", "b"], np.ones((3, 2)) / 2), "k")
