"""Moved to :mod:`scelmo.evaluation` (``_annotation_metrics``); kept for the modules that still import it here."""

from ..evaluation._annotation_metrics import AnnotationReport, annotation_metrics

__all__ = ["AnnotationReport", "annotation_metrics"]
