"""Evaluation: how well embeddings and annotations agree with known labels.

Leiden clustering scored by NMI/ARI (:func:`leiden_scores`), out-of-fold kNN label transfer
(:func:`knn_cross_validated`), the tidy table of :func:`scelmo.tl.benchmark`
(:func:`benchmark_embeddings`, with scib-metrics when there are batches) and the agreement of a
predicted annotation with the truth (:func:`annotation_metrics`). Most users call
:func:`scelmo.tl.benchmark` and :func:`scelmo.tl.annotation_metrics`.
"""

from ._annotation_metrics import AnnotationReport, annotation_metrics
from ._benchmark import COLUMNS, benchmark_embeddings
from ._clustering import DEFAULT_RESOLUTIONS, ClusteringScore, leiden_scores, neighbor_graph
from ._knn_accuracy import KnnScore, knn_cross_validated

__all__ = [
    "COLUMNS",
    "DEFAULT_RESOLUTIONS",
    "AnnotationReport",
    "ClusteringScore",
    "KnnScore",
    "annotation_metrics",
    "benchmark_embeddings",
    "knn_cross_validated",
    "leiden_scores",
    "neighbor_graph",
]
