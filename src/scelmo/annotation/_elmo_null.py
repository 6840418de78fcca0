"""Label-free abstention for gene signatures: compare each signature with random ones like it.

Zero-shot signatures always give every cell a best class, and a softmax always gives it a
probability, even when no class fits (a cell type not among the classes) or when a class's
text matched nothing in the data (``"xyzzy cell"``). Both questions are answered here from the
data alone, against a null of *random signatures*: each signature gene replaced by a random
gene of the same expression level (one of ``N_BINS`` bins of mean expression, as in scanpy's
``score_genes``), with the same weights; ``N_RANDOM`` such signatures per class, drawn with a
fixed seed.

Class presence
    Genes that mark a population present in the data are expressed together. The coherence of
    a class's text signature is the third largest, over its genes, of a gene's best Pearson
    correlation (over cells) with another gene of the signature: at least three of the text's
    genes have a co-expressed partner among them. A text that found some real markers among
    unrelated genes passes; one that found nothing (``"xyzzy cell"``) does not. A class is
    *absent* when its coherence does not exceed the ``1 - level`` quantile of the coherences of
    its random signatures. Absent classes take no cells.
Cell abstention
    A cell is ``"unknown"`` when its score on its best present class (final signature) does not
    exceed the ``1 - level`` quantile of that class's random signatures' scores in the same cell:
    it expresses the class's genes no more than random genes of their expression level.

Nothing here uses labels; ``level`` (default 0.05) is the only choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["N_BINS", "N_RANDOM", "SignatureNull", "signature_null"]

#: Bins of mean expression that random genes are matched in.
N_BINS = 25
#: Random signatures per class.
N_RANDOM = 100
#: Most cells (a fixed random subset) read for the presence test.
MAX_CELLS = 20_000


def _coherence(columns: np.ndarray) -> float:
    """The third largest, over genes, of a gene's best correlation with another gene of the set."""
    if columns.shape[1] < 2:
        return 0.0
    centred = columns - columns.mean(axis=0)
    sd = np.sqrt((centred**2).mean(axis=0))
    ok = sd > 1e-12
    correlation = (
        (centred.T @ centred) / len(columns) / np.outer(np.where(ok, sd, 1.0), np.where(ok, sd, 1.0))
    )
    correlation[~ok] = 0.0
    correlation[:, ~ok] = 0.0
    np.fill_diagonal(correlation, -np.inf)
    best = np.sort(correlation.max(axis=1))[::-1]
    return float(best[0])


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
        self.random_sets: list[list[np.ndarray]] = []
        for k in range(n_classes):
            genes = np.flatnonzero(positive[:, k] > 0)
            sets = []
            for r in range(n_random):
                column = k * n_random + r
                for g in genes:
                    pick = rng.choice(members[ranks[g]])
                    columns[pick, column] += positive[g, k]
                sets.append(columns[:, column] > 0)
            self.random_sets.append(sets)
        self.n_random = n_random
        self.n_classes = n_classes
        self.positive = positive
        self.random_weights = columns
        self.standardised = standardised

    def random_scores(self) -> np.ndarray:
        """``(cells, classes, n_random)`` scores of the random signatures."""
        scores = self.standardised.times(self.random_weights)
        return scores.reshape(scores.shape[0], self.n_classes, self.n_random)

    def present(
        self, level: float, *, max_cells: int = MAX_CELLS
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which classes are present: coherence of the signature genes above the null's quantile.

        Returns ``present`` (bool per class), the observed coherences and the null quantiles.
        """
        rng = np.random.default_rng(2)
        n_cells = self.standardised.n_cells
        rows = np.sort(rng.choice(n_cells, max_cells, replace=False)) if n_cells > max_cells else None
        observed = np.zeros(self.n_classes)
        cut = np.zeros(self.n_classes)
        for k in range(self.n_classes):
            sets = [np.flatnonzero(self.positive[:, k] > 0)]
            sets += [np.flatnonzero(self.random_sets[k][r]) for r in range(self.n_random)]
            genes = np.unique(np.concatenate(sets))
            columns = self.standardised.columns(genes, rows)
            position = {g: i for i, g in enumerate(genes)}
            values = [_coherence(columns[:, [position[g] for g in s]]) for s in sets]
            observed[k] = values[0]
            cut[k] = np.quantile(values[1:], 1 - level)
        return observed > cut, observed, cut

    def cell_cut(self, level: float) -> np.ndarray:
        """``(cells, classes)``: the ``1 - level`` quantile of each class's random scores in each cell."""
        return np.quantile(self.random_scores(), 1 - level, axis=2)


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
    >>> present, _, _ = signature_null(Standardised(x), weights).present(0.05)
    >>> present.tolist()
    [True, False]
    """
    return SignatureNull(standardised, weights, **kwargs)
