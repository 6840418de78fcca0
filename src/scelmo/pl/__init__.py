"""Plots of what ``scelmo.tl`` writes."""

from ._annotation import class_f1, confusion_matrix, confusion_table, similarity_heatmap
from ._benchmark import benchmark_table
from ._coverage import coverage_per_cell, gene_coverage
from ._explanations import explanation
from ._text_scores import text_scores

__all__ = [
    "benchmark_table",
    "class_f1",
    "confusion_matrix",
    "confusion_table",
    "coverage_per_cell",
    "explanation",
    "gene_coverage",
    "similarity_heatmap",
    "text_scores",
]
