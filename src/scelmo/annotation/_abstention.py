"""From class probabilities to labels: abstention ("unknown") and ontology-aware close calls.

A cell abstains when its best probability is under ``threshold`` or when the gap between its
two best classes is under ``min_margin``. With ``ontology_gap``, the classes within that gap of
the best one are first merged into their nearest common Cell Ontology ancestor (e.g. two T cell
subtypes into "T cell"), whose score is their summed probability.

Calibrating the threshold
-------------------------
Probabilities of zero-shot methods are not calibrated (they depend on the temperature, and
the softmax spreads them over the classes offered whether or not any fits), so a threshold is
chosen, not guessed:

- with some labelled cells (a labelled reference embedded the same way, or a few hundred
  cells you annotated by hand), use :func:`calibrate_threshold` with ``correct``: the
  smallest threshold at which the cells that keep a label reach ``target_accuracy``; then pass
  it as ``threshold=`` on the unlabelled cells;
- without labels, decide which share of cells you are willing to leave unlabelled and take
  that quantile of the scores (``calibrate_threshold(scores, keep_fraction=0.8)``): the
  least confident cells become unknown. This ranks cells, it does not promise an accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._output import UNKNOWN

if TYPE_CHECKING:
    from ._ontology import CellOntology

__all__ = ["Decision", "calibrate_threshold", "decide"]


@dataclass(frozen=True)
class Decision:
    """Labels chosen from probabilities.

    Attributes
    ----------
    labels
        One label per cell: a class, an ontology ancestor's label, or ``"unknown"``.
    score
        Confidence of that label (top probability, or the summed probability of the merged
        classes).
    margin
        Gap between the best and second-best class probability.
    ancestor_ids
        Cell Ontology id of the ancestor for merged cells, ``""`` elsewhere.
    """

    labels: np.ndarray
    score: np.ndarray
    margin: np.ndarray
    ancestor_ids: np.ndarray


def _merge_close_classes(
    probs: np.ndarray,
    classes: list[str],
    best: np.ndarray,
    gap: float,
    class_ontology: dict[str, str],
    ontology: CellOntology | None,
    labels: np.ndarray,
    score: np.ndarray,
    ancestor_ids: np.ndarray,
) -> np.ndarray:
    """Label each cell whose best classes are within ``gap`` by their nearest common ancestor.

    ``labels``, ``score`` (the summed probability of the merged classes) and ``ancestor_ids``
    are updated in place; returns which cells were merged.
    """
    if not any(class_ontology.get(c) for c in classes):
        raise ValueError(
            "ontology_gap needs Cell Ontology ids for the classes (class_ontology); build the class "
            "texts with scelmo.pp.celltype_descriptions(labels, source='cell_ontology')."
        )
    if ontology is None:
        from ._ontology import CellOntology

        ontology = CellOntology()
    merged = np.zeros(len(probs), dtype=bool)
    close = probs >= (best - gap - 1e-9)[:, None]
    ids = [class_ontology.get(c, "") for c in classes]
    cache: dict[tuple[int, ...], tuple[str, str]] = {}
    for i in np.flatnonzero(close.sum(axis=1) > 1):
        members = tuple(int(j) for j in np.flatnonzero(close[i]))
        if any(not ids[j] for j in members):
            continue
        if members not in cache:
            ancestor = ontology.common_ancestor([ids[j] for j in members])
            cache[members] = (ancestor, ontology.label(ancestor))
        ancestor, name = cache[members]
        labels[i] = name
        ancestor_ids[i] = ancestor
        score[i] = probs[i, list(members)].sum()
        merged[i] = True
    return merged


def decide(
    probs: np.ndarray,
    classes: Sequence[str],
    *,
    threshold: float | None = None,
    min_margin: float | None = None,
    ontology_gap: float | None = None,
    class_ontology: Mapping[str, str] | None = None,
    ontology: CellOntology | None = None,
    abstain: np.ndarray | None = None,
    unknown_label: str = UNKNOWN,
) -> Decision:
    """Choose a label per cell from class probabilities.

    Parameters
    ----------
    probs
        ``(n_cells, n_classes)`` probabilities.
    classes
        Class names, in column order.
    threshold
        Cells whose (merged) score is below this are labelled ``unknown_label``.
    min_margin
        Cells whose two best classes differ by less than this are labelled ``unknown_label``
        (ignored for cells merged into an ancestor).
    ontology_gap
        Classes within this probability gap of the best one are merged into their nearest
        common Cell Ontology ancestor (needs ``class_ontology``).
    class_ontology
        Class -> Cell Ontology id; classes without one are never merged.
    ontology
        A :class:`~scelmo.annotation.CellOntology` (created when needed).
    abstain
        Cells that abstain whatever their probabilities (a method's own rule, for example
        zero-shot elmo's comparison with random signatures); ``None``: none.
    unknown_label
        Label of abstaining cells.

    Returns
    -------
    A :class:`Decision`.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation import decide
    >>> probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.3, 0.7]])
    >>> decide(probs, ["B cell", "T cell"], threshold=0.6).labels.tolist()
    ['B cell', 'unknown', 'T cell']
    >>> decide(probs, ["B cell", "T cell"], min_margin=0.2).labels.tolist()
    ['B cell', 'unknown', 'T cell']
    """
    probs = np.asarray(probs, dtype=np.float64)
    classes = [str(c) for c in classes]
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"`probs` must be (n_cells, {len(classes)}), got {probs.shape}.")
    for name, value in (("threshold", threshold), ("min_margin", min_margin), ("ontology_gap", ontology_gap)):
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"`{name}` is a probability (between 0 and 1), got {value}.")
    n_cells, n_classes = probs.shape
    order = np.argsort(-probs, axis=1, kind="stable")
    rows = np.arange(n_cells)
    best = probs[rows, order[:, 0]] if n_classes else np.zeros(n_cells)
    second = probs[rows, order[:, 1]] if n_classes > 1 else np.zeros(n_cells)
    margin = best - second
    labels = np.asarray(classes, dtype=object)[order[:, 0]] if n_classes else np.full(n_cells, unknown_label)
    score = best.copy()
    ancestor_ids = np.full(n_cells, "", dtype=object)

    merged = np.zeros(n_cells, dtype=bool)
    if ontology_gap is not None and ontology_gap > 0 and n_classes > 1:
        merged = _merge_close_classes(
            probs,
            classes,
            best,
            ontology_gap,
            dict(class_ontology or {}),
            ontology,
            labels,
            score,
            ancestor_ids,
        )
    unknown = np.zeros(n_cells, dtype=bool)
    if threshold is not None:
        unknown |= score < threshold
    if min_margin is not None:
        unknown |= (margin < min_margin) & ~merged
    if abstain is not None:
        abstain = np.asarray(abstain, dtype=bool)
        if abstain.shape != (n_cells,):
            raise ValueError(
                f"`abstain` must have one value per cell ({n_cells}), got shape {abstain.shape}."
            )
        unknown |= abstain
    labels[unknown] = unknown_label
    ancestor_ids[unknown] = ""
    return Decision(
        labels=labels,
        score=score.astype(np.float32),
        margin=margin.astype(np.float32),
        ancestor_ids=ancestor_ids,
    )


def calibrate_threshold(
    scores: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray | None = None,
    *,
    target_accuracy: float | None = None,
    keep_fraction: float | None = None,
) -> float:
    """Pick an abstention threshold from cells whose true label is known.

    Parameters
    ----------
    scores
        Confidence of each labelled cell (``adata.obs[key + "_score"]``).
    correct
        Whether each cell's predicted label equals its true label (for ``target_accuracy``).
    target_accuracy
        Return the smallest threshold at which the cells scoring at least the threshold
        reach this accuracy (``1.0`` when no threshold reaches it).
    keep_fraction
        Instead, without labels: the threshold that keeps this fraction of cells (a quantile of
        ``scores``).

    Returns
    -------
    The threshold, to pass as ``threshold=`` to the annotation functions.

    Examples
    --------
    >>> from scelmo.annotation import calibrate_threshold
    >>> calibrate_threshold([0.9, 0.8, 0.6, 0.4], [True, True, False, False], target_accuracy=1.0)
    0.8
    >>> calibrate_threshold([0.9, 0.8, 0.6, 0.4], keep_fraction=0.5)
    0.8
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError("`scores` must be 1-d and non-empty.")
    if (target_accuracy is None) == (keep_fraction is None):
        raise ValueError("Pass exactly one of `target_accuracy` (with `correct`) and `keep_fraction`.")
    if keep_fraction is not None:
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"`keep_fraction` must be in (0, 1], got {keep_fraction}.")
        ordered = np.sort(scores)[::-1]
        return float(ordered[max(int(np.ceil(keep_fraction * scores.size)) - 1, 0)])
    if correct is None:
        raise ValueError("`target_accuracy` needs `correct` (which cells were labelled right).")
    correct = np.asarray(correct, dtype=bool)
    if correct.shape != scores.shape:
        raise ValueError(f"{scores.size} scores but {correct.size} values in `correct`.")
    order = np.argsort(-scores, kind="stable")
    ranked_scores = scores[order]
    kept_accuracy = np.cumsum(correct[order]) / np.arange(1, scores.size + 1)
    # Only cut between distinct scores: every cell at the threshold is kept.
    last_of_value = np.r_[ranked_scores[1:] != ranked_scores[:-1], True]
    assert target_accuracy is not None  # exactly one of the two is given (checked above)
    ok = np.flatnonzero(last_of_value & (kept_accuracy >= target_accuracy))
    if ok.size == 0:
        return 1.0
    return float(ranked_scores[ok[-1]])
