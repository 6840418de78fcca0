"""Cell-type annotation and its evaluation: zero-shot from text, kNN label transfer, benchmarks.

The public entry points are :func:`scelmo.tl.zeroshot_annotate`, :func:`scelmo.tl.knn_annotate`,
:func:`scelmo.tl.benchmark`, :func:`scelmo.tl.annotation_metrics` and
:func:`scelmo.pp.celltype_descriptions`; this package holds their logic and the pieces worth
reusing (Cell Ontology lookups, the hnswlib index, abstention, the shared output format).
"""

from scelmo._neighbors import HnswIndex, KnnVotes, cross_validated_votes, knn_votes
from scelmo.evaluation import AnnotationReport, annotation_metrics, benchmark_embeddings

from ._abstention import Decision, calibrate_threshold, decide
from ._descriptions import LANGCELL_TEMPLATE, class_texts
from ._ontology import CellOntology, OntologyMatch, normalize_label
from ._output import UNKNOWN, AnnotationResult, h5ad_safe, write_annotation
from ._zeroshot_options import ElmoZeroShotOptions, LangCellZeroShotOptions

__all__ = [
    "LANGCELL_TEMPLATE",
    "UNKNOWN",
    "AnnotationReport",
    "AnnotationResult",
    "CellOntology",
    "Decision",
    "ElmoZeroShotOptions",
    "HnswIndex",
    "KnnVotes",
    "LangCellZeroShotOptions",
    "OntologyMatch",
    "annotation_metrics",
    "benchmark_embeddings",
    "calibrate_threshold",
    "class_texts",
    "cross_validated_votes",
    "decide",
    "h5ad_safe",
    "knn_votes",
    "normalize_label",
    "write_annotation",
]
