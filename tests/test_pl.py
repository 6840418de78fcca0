"""``se.pl``: every figure's numbers equal an independent computation, and figures save to file."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from sklearn.metrics import confusion_matrix, f1_score

import scelmo as se


@pytest.fixture(scope="module")
def annotated():
    adata = sc.datasets.pbmc68k_reduced()
    se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca", threshold=0.5)
    return adata


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_confusion_matrix(annotated, tmp_path):
    ax = se.pl.confusion_matrix(annotated, "bulk_labels", "knn", save=tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 0
    truth = annotated.obs["bulk_labels"].astype(str)
    predicted = annotated.obs["knn"].astype(str)
    classes = sorted(truth.unique())
    columns = [*classes, "unknown"]
    expected = confusion_matrix(truth, predicted, labels=columns, normalize="true")[: len(classes)]
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == columns
    counts = se.pl.confusion_table(annotated, "bulk_labels", "knn", normalize=None)
    np.testing.assert_array_equal(
        counts.to_numpy(), confusion_matrix(truth, predicted, labels=columns)[: len(classes)]
    )


def test_class_f1(annotated, tmp_path):
    ax = se.pl.class_f1(annotated, "bulk_labels", "knn", save=tmp_path / "f1.pdf")
    assert (tmp_path / "f1.pdf").exists()
    truth = annotated.obs["bulk_labels"].astype(str)
    predicted = annotated.obs["knn"].astype(str)
    names = [t.get_text() for t in ax.get_yticklabels()]
    widths = [bar.get_width() for bar in ax.patches]
    expected = dict(
        zip(
            sorted(truth.unique()),
            f1_score(truth, predicted, average=None, labels=sorted(truth.unique())),
            strict=True,
        )
    )
    np.testing.assert_allclose(widths, [expected[n] for n in names])
    assert widths == sorted(widths)


def test_similarity_heatmap(annotated):
    ax = se.pl.similarity_heatmap(annotated, "knn", groupby="bulk_labels", max_cells=300)
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (300, len(annotated.uns["knn"]["classes"]))
    # the rows drawn are cells' probability rows, grouped by true label
    probs = annotated.obsm["knn_probs"]
    rows = {tuple(np.round(r, 6)) for r in probs}
    assert all(tuple(np.round(r, 6)) in rows for r in image)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == sorted(labels)
    with pytest.raises(KeyError, match="annotate first"):
        se.pl.similarity_heatmap(annotated, "zeroshot")


def test_benchmark_table(tmp_path):
    table = pd.DataFrame(
        {
            "embedding": ["X_pca", "X_pca", "X_elmo", "X_elmo", "X_pca"],
            "metric_type": [
                "bio_conservation",
                "label_transfer",
                "bio_conservation",
                "label_transfer",
                "info",
            ],
            "metric": ["leiden_nmi", "knn10_accuracy", "leiden_nmi", "knn10_accuracy", "leiden_resolution"],
            "value": [0.6, 0.82, 0.5, 0.77, 1.0],
        }
    )
    ax = se.pl.benchmark_table(table, save=tmp_path / "bench.svg")
    written = {t.get_text() for t in ax.texts}
    assert written == {"0.600", "0.820", "0.500", "0.770"}
    assert [t.get_text() for t in ax.get_yticklabels()] == ["X_pca", "X_elmo"]
    with pytest.raises(KeyError, match=r"tl\.benchmark"):
        se.pl.benchmark_table(sc.datasets.pbmc68k_reduced())


def test_gene_coverage():
    adata = sc.datasets.pbmc68k_reduced()
    genes = list(adata.raw.var_names[::2])
    table = se.GeneEmbeddings(genes, np.ones((len(genes), 3)))
    ax = se.pl.gene_coverage(adata, table, bins=10)
    x = adata.raw.X.toarray()
    in_table = np.isin(adata.raw.var_names, genes)
    expected = x[:, in_table].sum(1) / x.sum(1)
    np.testing.assert_allclose(se.pl.coverage_per_cell(adata, table), expected, rtol=1e-5)
    counts, _ = np.histogram(expected, bins=10, range=(0, 1))
    np.testing.assert_array_equal([p.get_height() for p in ax.patches], counts)
    assert ax.get_title().startswith(f"{len(genes)} of {adata.raw.n_vars} genes matched")
    plt.close("all")
    se.tl.elmo_embed(adata, table, progress=False, min_coverage=0)
    ax = se.pl.gene_coverage(adata)
    assert [p.get_height() for p in ax.patches] == [len(genes), adata.raw.n_vars - len(genes)]
