"""Text signatures: the genes whose text is closest to each class's text (steps 1-4 of ``_elmo_zeroshot``).

``S[g, k]`` is the cosine of gene ``g``'s table vector to class ``k``'s text vector; with
``contrast`` its mean over classes is subtracted, and the text affinity ``A[g, k]`` is that
value standardised over the genes of the table. With ``unspell`` the genes closest to any
class are rescored without what their bare symbol explains; with ``gene_mentions`` the genes a
class names add ``mention_weight * d[g, k]`` (``d`` = +1 named positive, -1 negative, contrasted
like ``S``). A class's signature is its ``n_genes`` genes of highest affinity (weight
``1 / n_genes``), and each gene named negative with weight ``-1 / n_genes``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._elmo_refine import top_genes
from ._elmo_text import project_out_symbols

if TYPE_CHECKING:
    from scelmo.text import TextEncoder

    from ._zeroshot_options import ElmoZeroShotOptions

__all__ = ["UNSPELL_CANDIDATES", "TextSignatures", "ranked_genes", "text_signatures"]

#: With ``unspell``, the genes whose symbols are embedded: this many times ``n_genes`` per class.
UNSPELL_CANDIDATES = 10


@dataclass
class TextSignatures:
    """The class signatures a text gives, and the affinities they were chosen by.

    Attributes
    ----------
    weights
        ``(genes, classes)`` signature weights: ``1/n_genes`` for the chosen genes,
        ``-1/n_genes`` for genes the class names negative, 0 elsewhere.
    affinity
        Text affinity plus the named genes' directions (what chose the genes).
    text_affinity
        Text affinity alone (what ``rematch`` compares programs to).
    allowed
        Genes that may join a signature (with text, varying over the cells).
    directions
        ``(genes, classes)`` +1 / -1 for genes named positive / negative, or ``None``.
    mentions
        The mentions found per class (``uns[key]['mentions']``), or ``None``.
    """

    weights: np.ndarray
    affinity: np.ndarray
    text_affinity: np.ndarray
    allowed: np.ndarray
    directions: np.ndarray | None
    mentions: dict[str, list[str]] | None


def _standardise_genes(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Standardise each column over the ``rows`` genes; other genes get 0."""
    out = np.zeros_like(values, dtype=np.float64)
    if rows.any():
        part = values[rows]
        sd = part.std(axis=0)
        out[rows] = (part - part.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)
    return out


def _contrasted(similarity: np.ndarray, contrasted: bool) -> np.ndarray:
    return similarity - similarity.mean(axis=1, keepdims=True) if contrasted else similarity


def _unspelled(
    table: np.ndarray,
    vectors: np.ndarray,
    candidates: np.ndarray,
    symbols: list[str],
    encoder: TextEncoder,
    *,
    contrasted: bool,
    cache: bool | str | os.PathLike,
    cache_dir: str | os.PathLike | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Text affinity of the candidate genes without their symbols' direction; the others get the minimum."""
    rows = project_out_symbols(table[candidates], symbols, encoder, cache, cache_dir)
    similarity = _contrasted(rows @ vectors.T, contrasted)
    part = similarity - similarity.mean(axis=0)
    allowed = np.zeros(len(table), dtype=bool)
    allowed[candidates] = True
    affinity = np.zeros((len(table), vectors.shape[0]))
    affinity[candidates] = part / np.where(part.std(axis=0) > 1e-12, part.std(axis=0), 1.0)
    affinity[~allowed] = affinity[allowed].min()
    return affinity, allowed


def text_signatures(
    table: np.ndarray,
    matched: np.ndarray,
    var_names: Sequence[str] | np.ndarray,
    vectors: np.ndarray,
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    encoder: TextEncoder,
    varies: np.ndarray,
    options: ElmoZeroShotOptions,
) -> TextSignatures:
    """The text signature of each class (see the module description).

    Parameters
    ----------
    table
        ``(genes, dim)`` unit gene vectors, rows aligned to ``var_names`` (zeros without text).
    matched
        Genes of ``var_names`` that have a row in the table.
    var_names
        The expression matrix's genes.
    vectors
        ``(classes, dim)`` unit class vectors (:func:`scelmo.annotation._elmo_text.class_vectors`).
    classes, texts
        The classes and their texts (read for the genes they name).
    encoder
        The table's encoder (embeds the symbols for ``unspell``).
    varies
        Genes that vary over the cells; the others cannot mark a class.
    options
        ``contrast``, ``n_genes``, ``gene_mentions``, ``mention_weight``, ``unspell``, ``cache``.

    Returns
    -------
    The :class:`TextSignatures`.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_signatures import text_signatures
    >>> from scelmo.annotation._zeroshot_options import ElmoZeroShotOptions
    >>> table = np.eye(3)  # three genes, each its own direction
    >>> options = ElmoZeroShotOptions(n_genes=1, gene_mentions=False, unspell=False)
    >>> signatures = text_signatures(table, np.ones(3, bool), ["A", "B", "C"], np.eye(3)[:2], ["a", "b"],
    ...                              {}, None, np.ones(3, bool), options)
    >>> signatures.weights.tolist()
    [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    """
    contrasted = options.contrast and len(classes) > 1
    text_affinity = _standardise_genes(_contrasted(table @ vectors.T, contrasted), matched)
    allowed = matched
    directions = mentions = None
    if options.gene_mentions:
        from ._gene_mentions import class_mentions

        directions, mentions = class_mentions(
            classes, texts, list(var_names), subtypes=options.subtype_mentions
        )
    named_positive = (directions > 0).any(axis=1) if directions is not None else np.zeros_like(allowed)
    if options.unspell:
        take = top_genes(text_affinity, UNSPELL_CANDIDATES * options.n_genes, allowed=allowed)
        candidates = np.union1d(
            np.flatnonzero((take > 0).any(axis=1)), np.flatnonzero(named_positive & allowed)
        )
        symbols = [str(v) for v in np.asarray(var_names)[candidates]]
        text_affinity, allowed = _unspelled(
            table,
            vectors,
            candidates,
            symbols,
            encoder,
            contrasted=contrasted,
            cache=options.cache,
            cache_dir=options.cache_dir,
        )
    affinity = text_affinity
    if directions is not None:
        affinity = text_affinity + options.mention_weight * _contrasted(directions, contrasted)
        allowed = allowed | named_positive
    # A gene constant over the cells cannot mark a class (and scores 0 in every cell).
    allowed = allowed & varies
    weights = top_genes(affinity, options.n_genes, allowed=allowed)
    if directions is not None:
        weights = _with_named_share(weights, (directions > 0) & allowed[:, None], options.named_share)
        weights[(directions < 0) & varies[:, None]] = -1.0 / options.n_genes
    return TextSignatures(weights, affinity, text_affinity, allowed, directions, mentions)


def _with_named_share(weights: np.ndarray, named: np.ndarray, share: float) -> np.ndarray:
    """Signature weights where each class's named genes hold ``share`` of the weight, equally.

    A class naming no measured gene keeps its weights; otherwise its other chosen genes share
    ``1 - share``. A product or marker written in a definition ("secretes glucagon") is the
    most direct statement a text makes, so it is not diluted by the ``n_genes`` genes chosen
    by similarity alone.
    """
    if share <= 0:
        return weights
    out = weights.copy()
    for k in np.flatnonzero(named.any(axis=0)):
        rest = (weights[:, k] > 0) & ~named[:, k]
        held = share if rest.any() else 1.0
        out[:, k] = 0.0
        out[named[:, k], k] = held / named[:, k].sum()
        if rest.any():
            out[rest, k] = (1.0 - held) / rest.sum()
    return out


def ranked_genes(names: np.ndarray, weights: np.ndarray, order_by: np.ndarray) -> list[str]:
    """Signature genes, best first; genes with a negative weight follow, as ``-NAME``.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_signatures import ranked_genes
    >>> ranked_genes(np.array(["A", "B", "C"]), np.array([0.5, 0.5, -0.5]), np.array([1.0, 2.0, 0.0]))
    ['B', 'A', '-C']
    """
    chosen = np.flatnonzero(weights > 0)
    against = np.flatnonzero(weights < 0)
    return [
        *names[chosen[np.argsort(-order_by[chosen], kind="stable")]].tolist(),
        *(f"-{name}" for name in names[against]),
    ]
