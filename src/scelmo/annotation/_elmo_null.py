"""Label-free abstention for gene signatures: compare each signature with random ones like it.

Zero-shot signatures always give every cell a best class, and a softmax always gives it a
probability, even when no class fits (a cell type not among the classes) or when a class's
text matched nothing in the data (``"xyzzy cell"``). Both questions are answered here from the
data alone, against a null of *random signatures*: each signature gene replaced by a random
gene of the same expression level (one of ``N_BINS`` bins of mean expression, as in scanpy's
``score_genes``), with the same weights; ``N_RANDOM`` such signatures per class, drawn with a
fixed seed. Random signatures are scored, and smoothed over the cells' neighbour graph, exactly
as the class's own signature is.

Cell support
    A cell's p-value for a class is ``(1 + r) / (1 + N_RANDOM)``, ``r`` the number of the
    class's random signatures that score at least as high as its signature in that cell. A
    cell is *supported* by its best class when that p-value is at most ``level``: it expresses
    the class's genes more than random genes of their expression level.
Class presence
    A class whose texts name a gene that varies over the cells (a product, "secretes glucagon";
    a marker, "CD14-positive"; a marker of its Cell Ontology subtypes) is present: the text
    itself vouches for it. Any other class is tested on the genes its text similarity chose
    (its text signature, before self-training, which gives any class, even a nonsense one, data
    genes that the cells it won do co-express). For each text gene ``g``: the cells the class
    wins most confidently on the text signatures without ``g`` (the top 30% by margin, as in
    self-training; without ``g``, so that a gene cannot vouch for cells it chose itself), and
    ``g``'s mean standardised expression in them minus that in the other cells, ranked among
    the same difference of every varying gene for the cells the class wins most confidently
    with all its genes. If the ``m`` text genes had nothing to do with the cells (``"xyzzy cell"``),
    the best of their ranks would fall in the top share ``q`` of genes with probability
    ``1 - (1 - q) ** m``; ``q`` is set so that this is ``level`` (and at least the top
    :data:`MIN_TOP` genes). Absent classes take no cells: the cells they won go to their best
    present class, if it supports them (below).
Cell abstention
    A cell is ``"unknown"`` when its best present class's final signature does not support it.

Nothing here uses labels; ``level`` (default 0.05) is the only choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._elmo_refine import confident_cells, standardise_columns

__all__ = ["N_BINS", "N_RANDOM", "PresenceTest", "SignatureNull", "signature_null", "text_genes_found"]

#: Bins of mean expression that random genes are matched in.
N_BINS = 25
#: Random signatures per class.
N_RANDOM = 100
#: A text gene among this many best-ranked genes always passes the presence test (a small gene
#: panel, such as 765 highly variable genes, would otherwise ask for the top 3).
MIN_TOP = 10


class SignatureNull:
    """Random signatures matched to a set of signatures (see the module description).

    Parameters
    ----------
    standardised
        Per-gene standardised expression (``times``, ``mean``, ``sd``).
    weights
        ``(genes, classes)`` signature weights; only positive weights are matched.
    candidates
        Genes that random signatures may use (default: the genes that vary over cells).
    n_random
        Random signatures per class.
    seed
        Seed of the draw.
    """

    def __init__(
        self,
        standardised: Any,
        weights: np.ndarray,
        *,
        candidates: np.ndarray | None = None,
        n_random: int = N_RANDOM,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        n_genes, n_classes = weights.shape
        if candidates is None:
            candidates = standardised.varies
        mean = standardised.mean
        pool = np.flatnonzero(candidates)
        if pool.size == 0:
            raise ValueError("No gene varies over the cells; zero-shot signatures cannot be scored.")
        ranks = np.empty(n_genes, dtype=np.int64)
        ranks[pool] = np.searchsorted(
            np.quantile(mean[pool], np.linspace(0, 1, N_BINS + 1)[1:-1]), mean[pool]
        )
        other = np.setdiff1d(np.arange(n_genes), pool)
        if other.size:  # a signature gene that does not vary: match it to the lowest bin
            ranks[other] = 0
        members = [pool[ranks[pool] == b] for b in range(N_BINS)]
        for b in range(N_BINS):
            if members[b].size == 0:
                members[b] = pool
        columns = np.zeros((n_genes, n_classes * n_random))
        positive = np.clip(weights, 0.0, None)
        for k in range(n_classes):
            genes = np.flatnonzero(positive[:, k] > 0)
            for r in range(n_random):
                for g in genes:
                    columns[rng.choice(members[ranks[g]]), k * n_random + r] += positive[g, k]
        self.n_random = n_random
        self.n_classes = n_classes
        self.random_weights = columns
        self.standardised = standardised

    def cell_pvalues(
        self, observed: np.ndarray, smooth: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> np.ndarray:
        """``(cells, classes)`` p-values of the observed signature scores against the random ones.

        Parameters
        ----------
        observed
            ``(cells, classes)`` scores of the signatures (positive weights), smoothed like the
            random ones will be.
        smooth
            Applied to each class's ``(cells, N_RANDOM)`` random scores (the smoothing of the
            observed scores), or ``None``.

        Returns
        -------
        ``(1 + r) / (1 + n_random)``, ``r`` the random signatures scoring at least ``observed``.
        """
        out = np.ones_like(observed, dtype=np.float64)
        for k in range(self.n_classes):
            # one class at a time: cells x n_random, not cells x classes x n_random
            columns = slice(k * self.n_random, (k + 1) * self.n_random)
            scores = self.standardised.times(self.random_weights[:, columns])
            if smooth is not None:
                scores = smooth(scores)
            above = (scores >= observed[:, k : k + 1] - 1e-12).sum(axis=1)
            out[:, k] = (1.0 + above) / (1.0 + self.n_random)
        return out


def signature_null(standardised: Any, weights: np.ndarray, **kwargs: Any) -> SignatureNull:
    """A :class:`SignatureNull` for ``weights`` (see the module description).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_null import signature_null
    >>> from scelmo.annotation._standardised import Standardised
    >>> rng = np.random.default_rng(0)
    >>> x = rng.poisson(3.0, size=(200, 400)).astype(float)
    >>> x[:, :5] = np.r_[rng.poisson(6.0, (100, 5)), np.zeros((100, 5))]  # mark half of the cells
    >>> weights = np.zeros((400, 2)); weights[:5, 0] = 0.2; weights[200:205, 1] = 0.2
    >>> z = Standardised(x)
    >>> p = signature_null(z, weights).cell_pvalues(z.times(weights))
    >>> # the marked cells beat random genes of their level more often than a random signature does
    >>> round(float((p[:100, 0] <= 0.05).mean()), 2), round(float((p[:, 1] <= 0.05).mean()), 2)
    (0.59, 0.07)
    """
    return SignatureNull(standardised, weights, **kwargs)


@dataclass(frozen=True)
class PresenceTest:
    """The presence test of each class (see the module description).

    Attributes
    ----------
    present
        Per class, whether it passed (classes not tested keep ``False``).
    cells
        Cells each class won.
    best_gene, best_rank
        Per class, its text gene most over-expressed in the cells it won, and that gene's rank
        (1 = most over-expressed of all genes that vary).
    top
        How many of the best-ranked genes a text gene must be among.
    """

    present: np.ndarray
    cells: np.ndarray
    best_gene: np.ndarray
    best_rank: np.ndarray
    top: np.ndarray

    def record(self, classes: Any, names: Any) -> dict[str, dict[str, Any]]:
        """``uns[key]['presence']``: per class, cells won, its best text gene, that gene's rank, the cut."""
        return {
            str(c): {
                "cells": int(self.cells[k]),
                "best_text_gene": str(names[self.best_gene[k]]) if self.best_gene[k] >= 0 else "",
                "rank": int(self.best_rank[k]),
                "top": int(self.top[k]),
                "present": bool(self.present[k]),
            }
            for k, c in enumerate(classes)
        }


def text_genes_found(
    standardised: Any,
    text_weights: np.ndarray,
    named: np.ndarray,
    level: float,
    smooth: Callable[[np.ndarray], np.ndarray] | None = None,
) -> PresenceTest:
    """Which classes' texts found something in the data (see the module description).

    Parameters
    ----------
    standardised
        Per-gene standardised expression (``times``, ``columns``, ``group_means``, ``varies``).
    text_weights
        ``(genes, classes)`` text signature weights; positive ones are the text genes.
    named
        ``(genes, classes)``: genes each class's texts name positive (present without a test
        when one of them varies over the cells).
    level
        Chance of calling a class whose text genes are unrelated to the cells present.
    smooth
        The smoothing of the scores (applied to the text scores and to each gene's column).

    Returns
    -------
    The :class:`PresenceTest`.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_null import text_genes_found
    >>> from scelmo.annotation._standardised import Standardised
    >>> rng = np.random.default_rng(0)
    >>> x = rng.poisson(1.0, size=(400, 300)).astype(float)
    >>> x[:200, :3] += 4  # genes 0-2 mark the first half of the cells
    >>> text = np.zeros((300, 2)); text[[0, 1, 2], 0] = 1 / 3; text[[7, 8, 9], 1] = 1 / 3
    >>> found = text_genes_found(Standardised(x), text, np.zeros((300, 2), bool), 0.05)
    >>> found.present.tolist()
    [True, False]
    """
    n_classes = text_weights.shape[1]
    varies = np.asarray(standardised.varies, dtype=bool)
    positive = np.clip(text_weights, 0.0, None)
    scores = standardised.times(positive)
    if smooth is not None:
        scores = smooth(scores)
    best = confident_cells(standardise_columns(scores))[1]
    n_cells = len(best)
    means = standardised.group_means(best, n_classes)
    counts = np.bincount(best[best >= 0], minlength=n_classes).astype(np.float64)
    everyone = standardised.group_means(np.zeros(n_cells, dtype=np.int64), 1)[0]
    pool = np.flatnonzero(varies)
    present = (named & varies[:, None]).any(axis=0)
    best_gene = np.full(n_classes, -1)
    best_rank = np.zeros(n_classes, dtype=np.int64)
    top = np.zeros(n_classes, dtype=np.int64)
    for k in range(n_classes):
        genes = np.flatnonzero((positive[:, k] > 0) & varies)
        if present[k] or genes.size == 0 or counts[k] in (0, n_cells):
            continue
        rest = (n_cells * everyone - counts[k] * means[k]) / (n_cells - counts[k])
        background = np.sort(-(means[k] - rest)[pool])
        columns = standardised.columns(genes)
        smoothed = smooth(columns) if smooth is not None else columns
        ranks = np.empty(genes.size, dtype=np.int64)
        for i, gene in enumerate(genes):
            # the cells the class wins without this gene: a gene cannot vouch for cells it chose
            without = scores.copy()
            without[:, k] -= positive[gene, k] * smoothed[:, i]
            won = confident_cells(standardise_columns(without))[1] == k
            difference = columns[won, i].mean() - columns[~won, i].mean() if 0 < won.sum() < n_cells else 0.0
            ranks[i] = 1 + np.searchsorted(background, -difference, side="left")
        share = 1.0 - (1.0 - level) ** (1.0 / genes.size)
        top[k] = max(MIN_TOP, int(np.floor(share * pool.size)))
        at = int(np.argmin(ranks))
        best_gene[k], best_rank[k] = genes[at], int(ranks[at])
        present[k] = ranks[at] <= top[k]
    return PresenceTest(present, counts.astype(np.int64), best_gene, best_rank, top)
