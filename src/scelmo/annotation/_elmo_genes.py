"""Gene-space scores of zero-shot elmo: signatures from text, scored on standardised expression.

A cell's score for a class is the weighted sum of the standardised expression (per-gene
z-score) of the class's signature genes (:mod:`scelmo.annotation._elmo_signatures`); then
``refine`` rounds of anchored self-training (:mod:`scelmo.annotation._elmo_refine`), optionally
``rematch`` (refined signatures given to the classes one to one by their texts) and ``abstain``
(label-free abstention against random signatures, :mod:`scelmo.annotation._elmo_null`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from scelmo._logging import logger

from ._elmo_null import signature_null
from ._elmo_refine import anchored_refine, standardise_columns
from ._elmo_signatures import TextSignatures, ranked_genes, text_signatures
from ._standardised import Standardised, standardise

if TYPE_CHECKING:
    from scelmo.gene_embeddings import GeneEmbeddings
    from scelmo.text import TextEncoder

    from ._zeroshot_options import ElmoZeroShotOptions

__all__ = ["CELL_LEVEL", "gene_scores", "match_programs"]

#: A cell abstains when its best class's score is not above the median of that class's random
#: signatures in the cell: it expresses the class's genes no more than random genes of their level.
CELL_LEVEL = 0.5


def _program_differences(standardised: Standardised, scores: np.ndarray) -> np.ndarray:
    """Per program, how the cells it wins differ from the others (genes x programs).

    For each column of ``scores``: the difference between the mean standardised expression of
    the cells it wins and that of the other cells, standardised over genes.
    """
    n_programs = scores.shape[1]
    best = np.argmax(scores, axis=1)
    means = standardised.group_means(best, n_programs)
    counts = np.bincount(best, minlength=n_programs).astype(np.float64)
    total = counts @ means
    out = np.zeros((means.shape[1], n_programs))
    for k in range(n_programs):
        if 0 < counts[k] < len(scores):
            out[:, k] = means[k] - (total - counts[k] * means[k]) / (len(scores) - counts[k])
    sd = out.std(axis=0)
    return (out - out.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)


def match_programs(agreement: np.ndarray) -> np.ndarray:
    """One-to-one assignment of programs (rows) to classes (columns) maximising the summed agreement.

    Returns ``order`` such that class ``k`` takes program ``order[k]`` (so ``scores[:, order]``
    puts each class's program in its column).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_genes import match_programs
    >>> agreement = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])  # program 0 fits class 1...
    >>> match_programs(agreement).tolist()
    [2, 0, 1]
    """
    from scipy.optimize import linear_sum_assignment

    programs, classes = linear_sum_assignment(np.asarray(agreement, dtype=np.float64), maximize=True)
    order = np.empty(agreement.shape[1], dtype=np.int64)
    order[classes] = programs
    return order


def _refine(
    standardised: Standardised, text_weights: np.ndarray, n_genes: int, rounds: int, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    # one name to call it by, so that a test can stand in a drifting self-training
    return anchored_refine(standardised, text_weights, n_genes, rounds, allowed=allowed)


def _rematch(
    standardised: Standardised,
    scores: np.ndarray,
    weights: np.ndarray,
    signatures: TextSignatures,
    mention_weight: float,
) -> np.ndarray:
    """The program each class takes, by the agreement of the refined signatures with the texts."""
    agreement = weights.T @ signatures.text_affinity
    directions = signatures.directions
    if directions is not None and mention_weight > 0:
        named_count = np.maximum(np.abs(directions).sum(axis=0), 1.0)
        differences = _program_differences(standardised, standardise_columns(scores))
        agreement = agreement + mention_weight * (differences.T @ directions) / named_count
    return match_programs(agreement)


def _abstain(
    standardised: Standardised,
    scores: np.ndarray,
    text_weights: np.ndarray,
    weights: np.ndarray,
    classes: Sequence[str],
    level: float,
) -> dict[str, Any]:
    """Absent classes and unknown cells against random signatures of the same expression levels."""
    # the presence test reads the text's genes (what the class was asked to be); the cell test
    # the final signature (what the class's cells are scored on)
    present, observed, cut = signature_null(standardised, text_weights).present(level)
    present &= (text_weights > 0).any(axis=0)
    final_null = signature_null(standardised, weights, seed=1)
    positive_scores = standardised.times(np.clip(weights, 0.0, None))
    ranked = np.where(present[None, :], standardise_columns(scores), -np.inf)
    best = np.argmax(ranked, axis=1)
    rows = np.arange(len(scores))
    cell_ok = positive_scores[rows, best] > final_null.cell_cut(CELL_LEVEL)[rows, best]
    return {
        "absent": [c for c, p in zip(classes, present, strict=True) if not p],
        "unknown_cells": ~cell_ok if present.any() else np.ones(len(scores), dtype=bool),
        "present_classes": present,
        "presence": {
            c: {"variance": float(o), "null_quantile": float(q)}
            for c, o, q in zip(classes, observed, cut, strict=True)
        },
    }


def gene_scores(
    matrix: Any,
    var_names: Sequence[str] | np.ndarray,
    table: GeneEmbeddings,
    vectors: np.ndarray,
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    encoder: TextEncoder,
    options: ElmoZeroShotOptions,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Gene-space class scores ``(n_cells, n_classes)`` (see the module description).

    Parameters
    ----------
    matrix
        Cells x genes expression (log-normalised; dense or sparse).
    var_names
        Its genes.
    table
        The gene table.
    vectors
        ``(classes, dim)`` unit class vectors in the table's space.
    classes, texts
        The classes and their texts.
    encoder
        The table's encoder.
    options
        The elmo options.

    Returns
    -------
    scores
        Before ``scale``.
    info
        ``genes``, ``refined_genes``, ``kept_text``, ``mentions``, ``rematched``, ``absent``,
        ``presence``, ``unknown_cells``, ``present_classes`` and ``coverage``, where they apply.

    Examples
    --------
    >>> from scelmo.annotation._elmo_genes import gene_scores
    >>> scores, info = gene_scores(x, var_names, table, vectors, classes, texts, encoder, options)  # doctest: +SKIP
    """
    aligned = table.align(var_names, min_coverage=0.0)
    rows = aligned.matrix.astype(np.float64)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    standardised = standardise(matrix)  # on a dask matrix, each pass is a dask graph of row-chunk tasks
    signatures = text_signatures(
        rows, aligned.matched, var_names, vectors, classes, texts, encoder, standardised.varies, options
    )
    info: dict[str, Any] = {} if signatures.mentions is None else {"mentions": signatures.mentions}
    text_weights = weights = signatures.weights
    scores = standardised.times(weights)
    if options.refine:
        scores, weights, refined = _refine(
            standardised, text_weights, options.n_genes, options.refine, signatures.allowed
        )
        info["kept_text"] = [c for c, kept in zip(classes, refined["kept_text"], strict=True) if kept]
        if options.rematch and len(classes) > 1:
            order = _rematch(standardised, scores, weights, signatures, options.mention_weight)
            scores, weights = scores[:, order], weights[:, order]
            info["rematched"] = {c: classes[int(p)] for c, p in zip(classes, order, strict=True)}
    if options.abstain:
        info.update(_abstain(standardised, scores, text_weights, weights, classes, options.abstain_level))
    names = np.asarray(var_names)
    info["genes"] = {
        c: ranked_genes(names, text_weights[:, k], signatures.affinity[:, k]) for k, c in enumerate(classes)
    }
    if options.refine:
        info["refined_genes"] = {
            c: ranked_genes(names, np.where(weights[:, k] > 0, weights[:, k], 0.0), weights[:, k])
            for k, c in enumerate(classes)
        }
    info["coverage"] = aligned.report(max_listed=20)
    logger.debug(
        "zero-shot elmo: %d classes, %d matched genes, %d refinement rounds",
        len(classes),
        aligned.n_matched,
        options.refine,
    )
    return scores, info
