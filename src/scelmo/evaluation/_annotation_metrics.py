"""Agreement of a predicted annotation with true labels: accuracy, macro-F1, a per-class report."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

# The label of abstaining cells: scelmo.annotation.UNKNOWN. Evaluation sits beside annotation and
# does not import it (annotation re-exports this module's names for older code).
UNKNOWN = "unknown"

__all__ = ["AnnotationReport", "annotation_metrics"]


@dataclass(frozen=True)
class AnnotationReport:
    """Scores of a predicted annotation against the truth.

    Attributes
    ----------
    accuracy
        Fraction of all cells whose prediction equals the truth (abstentions count as wrong).
    macro_f1
        Unweighted mean F1 over the true classes.
    per_class
        DataFrame indexed by true class: ``precision``, ``recall``, ``f1``, ``support``,
        ``n_predicted``.
    n_cells
        Cells scored.
    n_unknown
        Cells predicted ``"unknown"``.
    coverage
        Fraction of cells with a label (not ``"unknown"``).
    accuracy_labelled
        Accuracy among the cells with a label.
    """

    accuracy: float
    macro_f1: float
    per_class: pd.DataFrame
    n_cells: int
    n_unknown: int
    coverage: float
    accuracy_labelled: float

    def to_dict(self) -> dict[str, float | int]:
        """The scalar scores as a dict.

        Examples
        --------
        >>> import pandas as pd
        >>> from scelmo.evaluation import annotation_metrics
        >>> annotation_metrics(pd.Series(["a", "b"]), pd.Series(["a", "a"])).to_dict()["accuracy"]
        0.5
        """
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n_cells": self.n_cells,
            "n_unknown": self.n_unknown,
            "coverage": self.coverage,
            "accuracy_labelled": self.accuracy_labelled,
        }


def annotation_metrics(
    adata_or_truth: AnnData | pd.Series | np.ndarray,
    true_key_or_pred: str | pd.Series | np.ndarray,
    pred_key: str | None = None,
    *,
    mapping: dict[str, str] | None = None,
    unknown_label: str = UNKNOWN,
) -> AnnotationReport:
    """Accuracy, macro-F1 and a per-class report of predicted labels against true labels.

    Call it as ``annotation_metrics(adata, "true_col", "pred_col")`` or with two arrays
    ``annotation_metrics(truth, predicted)``. Macro-F1 averages over the true classes (a
    predicted class that never occurs in the truth, such as ``"unknown"`` or an ontology
    ancestor, lowers precision but adds no class); it equals scikit-learn's
    ``f1_score(truth, predicted, average="macro", labels=true_classes)``.

    Parameters
    ----------
    adata_or_truth
        An AnnData, or the true labels.
    true_key_or_pred
        The ``obs`` column of true labels, or the predicted labels.
    pred_key
        The ``obs`` column of predictions (with an AnnData).
    mapping
        Applied to the true labels first, e.g. fine labels -> coarse groups (labels not in it
        are kept).
    unknown_label
        The label of abstaining cells.

    Returns
    -------
    An :class:`AnnotationReport`.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> report = se.tl.annotation_metrics(adata, "bulk_labels", "bulk_labels")
    >>> report.accuracy, report.macro_f1
    (1.0, 1.0)
    >>> int(report.per_class.loc["CD19+ B", "support"])
    95
    """
    truth, predicted = _label_pair(adata_or_truth, true_key_or_pred, pred_key)
    if mapping is not None:
        truth = truth.map(lambda v: mapping.get(v, v))
    keep = truth.notna().to_numpy()
    truth = truth[keep].astype(str).to_numpy()
    predicted = predicted[keep].fillna(unknown_label).astype(str).to_numpy()
    if truth.size == 0:
        raise ValueError("No cell has a true label.")
    per_class = _per_class(truth, predicted)
    correct = truth == predicted
    labelled = predicted != unknown_label
    return AnnotationReport(
        accuracy=float(correct.mean()),
        macro_f1=float(per_class["f1"].mean()),
        per_class=per_class,
        n_cells=int(truth.size),
        n_unknown=int((~labelled).sum()),
        coverage=float(labelled.mean()),
        accuracy_labelled=float(correct[labelled].mean()) if labelled.any() else float("nan"),
    )


def _label_pair(
    adata_or_truth: AnnData | pd.Series | np.ndarray,
    true_key_or_pred: str | pd.Series | np.ndarray,
    pred_key: str | None,
) -> tuple[pd.Series, pd.Series]:
    """The true and predicted labels, from two ``obs`` columns or two arrays."""
    if isinstance(adata_or_truth, AnnData):
        if not isinstance(true_key_or_pred, str) or pred_key is None:
            raise TypeError(
                "With an AnnData, pass the two obs column names: annotation_metrics(adata, true_key, pred_key)."
            )
        for key in (true_key_or_pred, pred_key):
            if key not in adata_or_truth.obs:
                raise KeyError(
                    f"adata.obs[{key!r}] not found; available: {list(adata_or_truth.obs.columns)}."
                )
        truth = adata_or_truth.obs[true_key_or_pred]
        predicted = adata_or_truth.obs[pred_key]
    else:
        if pred_key is not None:
            raise TypeError("pred_key is for AnnData input; pass annotation_metrics(truth, predicted).")
        truth, predicted = adata_or_truth, true_key_or_pred
    truth = pd.Series(np.asarray(truth, dtype=object))
    predicted = pd.Series(np.asarray(predicted, dtype=object))
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions.")
    return truth, predicted


def _per_class(truth: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Precision, recall, F1, support and predictions of each true class."""
    rows = []
    for cls in sorted(set(truth)):
        tp = int(np.sum((truth == cls) & (predicted == cls)))
        support = int(np.sum(truth == cls))
        n_predicted = int(np.sum(predicted == cls))
        precision = tp / n_predicted if n_predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append((cls, precision, recall, f1, support, n_predicted))
    return pd.DataFrame(
        rows, columns=["class", "precision", "recall", "f1", "support", "n_predicted"]
    ).set_index("class")
