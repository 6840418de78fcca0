"""Gene-space scores of zero-shot elmo: signatures from text, scored on standardised expression.

A cell's score for a class is the weighted sum of the standardised expression (per-gene
z-score) of the class's signature genes (:mod:`scelmo.annotation._elmo_signatures`); then
``refine`` rounds of anchored self-training (:mod:`scelmo.annotation._elmo_refine`), optionally
``rematch`` (refined signatures given to the classes one to one by their texts) and ``abstain``
(label-free abstention against random signatures, :mod:`scelmo.annotation._elmo_null`), after
the scores are smoothed over the cells' neighbour graph (``smooth``, :mod:`scelmo.annotation._smoothing`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from scelmo._logging import logger

from ._elmo_null import signature_null, text_genes_found
from ._elmo_refine import anchored_refine, standardise_columns
from ._elmo_signatures import TextSignatures, ranked_genes, text_signatures
from ._smoothing import smooth_scores
from ._standardised import Standardised, standardise

if TYPE_CHECKING:
    from scelmo.text import TextEncoder

    from ._elmo_record import ElmoInputs
    from ._zeroshot_options import ElmoZeroShotOptions

__all__ = ["gene_scores", "match_programs", "scored_signatures"]


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


@dataclass
class _Scored:
    """One pass of the gene-space scorer over a set of classes."""

    scores: np.ndarray
    weights: np.ndarray
    signatures: TextSignatures
    kept_text: list[str]
    rematched: dict[str, str] | None


def _score_classes(
    standardised: Standardised,
    table_rows: tuple[np.ndarray, np.ndarray, Sequence[str] | np.ndarray],
    vectors: np.ndarray,
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    encoder: TextEncoder,
    options: ElmoZeroShotOptions,
    smooth: Callable[[np.ndarray], np.ndarray] | None,
) -> _Scored:
    """Text signatures, anchored self-training, ``rematch`` and smoothing for ``classes``."""
    rows, matched, var_names = table_rows
    signatures = text_signatures(
        rows, matched, var_names, vectors, classes, texts, encoder, standardised.varies, options
    )
    weights = signatures.weights
    scores = standardised.times(weights)
    kept: list[str] = []
    rematched = None
    if options.refine:
        scores, weights, refined = _refine(
            standardised, signatures.weights, options.n_genes, options.refine, signatures.allowed
        )
        kept = [c for c, k in zip(classes, refined["kept_text"], strict=True) if k]
        if options.rematch and len(classes) > 1:
            order = _rematch(standardised, scores, weights, signatures, options.mention_weight)
            scores, weights = scores[:, order], weights[:, order]
            rematched = {c: classes[int(p)] for c, p in zip(classes, order, strict=True)}
    if smooth is not None:
        scores = smooth(scores)
    return _Scored(scores, weights, signatures, kept, rematched)


def _abstention(
    standardised: Standardised,
    scored: _Scored,
    present: np.ndarray,
    level: float,
    smooth: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """Cells whose best present class's final signature does not support them (``_elmo_null``)."""
    if not present.any():
        return np.ones(len(scored.scores), dtype=bool)
    observed = standardised.times(np.clip(scored.weights, 0.0, None))
    if smooth is not None:
        observed = smooth(observed)
    support = signature_null(standardised, scored.weights, seed=1).cell_pvalues(observed, smooth)
    ranked = np.where(present[None, :], standardise_columns(scored.scores), -np.inf)
    best = np.argmax(ranked, axis=1)
    return support[np.arange(len(best)), best] > level


def scored_signatures(
    inputs: ElmoInputs,
    vectors: np.ndarray,
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    encoder: TextEncoder,
    options: ElmoZeroShotOptions,
) -> tuple[Standardised, _Scored, dict[str, Any]]:
    """Steps 1-9 of the gene-space score: the standardised expression, the final pass and its diagnostics.

    :func:`gene_scores` reports them; explanations (``scelmo.annotation._explain``) read the
    final signatures from here, so both follow one computation.
    """
    matrix, var_names, table, graph = inputs.matrix, inputs.var_names, inputs.table, inputs.graph
    if var_names is None or table is None:
        raise ValueError("The gene-space score needs the expression matrix and the gene table.")
    aligned = table.align(var_names, min_coverage=0.0)
    rows = aligned.matrix.astype(np.float64)
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    standardised = standardise(matrix)  # on a dask matrix, each pass is a dask graph of row-chunk tasks
    info: dict[str, Any] = {}
    smooth = None
    if graph is not None and options.smooth:
        smooth = functools.partial(smooth_scores, graph=graph, rounds=options.smooth)
        info["smoothed_on"] = graph.source
    table_rows = (rows, aligned.matched, var_names)
    scored = _score_classes(standardised, table_rows, vectors, classes, texts, encoder, options, smooth)
    if scored.signatures.mentions is not None:
        info["mentions"] = scored.signatures.mentions
    if options.abstain:
        directions = scored.signatures.directions
        named = (directions > 0) if directions is not None else np.zeros_like(scored.weights, dtype=bool)
        found = text_genes_found(
            standardised, scored.signatures.weights, named, options.abstain_level, smooth
        )
        present = found.present
        info["absent"] = [c for c, p in zip(classes, present, strict=True) if not p]
        info["presence"] = found.record(classes, np.asarray(var_names))
        info["present_classes"] = present
        info["unknown_cells"] = _abstention(standardised, scored, present, options.abstain_level, smooth)
    info["coverage"] = aligned.report(max_listed=20)
    logger.debug(
        "zero-shot elmo: %d classes, %d matched genes, %d refinement rounds",
        len(classes),
        aligned.n_matched,
        options.refine,
    )
    return standardised, scored, info


def gene_scores(
    inputs: ElmoInputs,
    vectors: np.ndarray,
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    encoder: TextEncoder,
    options: ElmoZeroShotOptions,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Gene-space class scores ``(n_cells, n_classes)`` (see the module description).

    Parameters
    ----------
    inputs
        What was read from the AnnData (:func:`scelmo.annotation._elmo_record.elmo_inputs`): the
        log-normalised expression matrix and its genes, the gene table, and the neighbour graph
        the scores are smoothed over (``options.smooth`` rounds, before the abstention's tests).
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
    >>> scores, info = gene_scores(inputs, vectors, classes, texts, encoder, options)  # doctest: +SKIP
    """
    _, scored, info = scored_signatures(inputs, vectors, classes, texts, encoder, options)
    var_names = inputs.var_names
    assert var_names is not None  # scored_signatures refuses inputs without genes
    if options.refine:
        info["kept_text"] = scored.kept_text
    if scored.rematched is not None:
        info["rematched"] = scored.rematched
    scores, weights, signatures = scored.scores, scored.weights, scored.signatures
    text_weights = signatures.weights
    names = np.asarray(var_names)
    info["genes"] = {
        c: ranked_genes(names, text_weights[:, k], signatures.affinity[:, k]) for k, c in enumerate(classes)
    }
    if options.refine:
        info["refined_genes"] = {
            c: ranked_genes(names, np.where(weights[:, k] > 0, weights[:, k], 0.0), weights[:, k])
            for k, c in enumerate(classes)
        }
    return scores, info
