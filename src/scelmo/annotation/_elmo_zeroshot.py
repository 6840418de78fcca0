"""Zero-shot annotation in the text-embedding space of a gene table (scELMo / GenePT).

Class texts are embedded by the encoder that built the gene table, so genes (rows of the
table), cells (``elmo_embed`` averages of gene rows) and classes share one space. Two scores:

``"genes"`` (default): a gene-space score.
    1. ``S[g, k]``: cosine of gene ``g``'s table vector to class ``k``'s text vector (the mean of
       the class's description vectors);
    2. contrast: ``S[g, k] - mean_k' S[g, k']``, so that only genes closer to this class than to
       the others count (``contrast=False`` keeps raw similarities); the text affinity
       ``A[g, k]`` is this value standardised over the genes of the table, per class;
    2b. with ``unspell`` (default), the ``10 * n_genes`` genes with the highest affinity to any
       class are rescored without the part of their vector that their bare symbol explains
       (the symbol is embedded by the same encoder and projected out), and the signature is
       chosen among them: a gene text begins with its symbol, which a general-domain encoder
       reads by its letters ("B cell" -> BAX, BLVRB, B9D1);
    3. with ``gene_mentions``, the genes the class's name and texts name (``"CD56+ NK"`` ->
       NCAM1, ``"CD3-negative"`` -> CD3D/E/G, ``"secretes glucagon"`` -> GCG; with
       ``subtype_mentions`` also the markers its Cell Ontology subtypes name; see
       ``scelmo.annotation._gene_mentions``) add ``mention_weight * (d[g, k] - mean_k' d[g, k'])``
       to ``A`` (``d`` = +1 named positive, -1 negative; the mean over classes is left out with
       ``contrast=False``);
    4. class signature: the ``n_genes`` genes with the highest ``A`` among the genes that vary
       over the cells, and each gene named negative with weight ``-1/n_genes``; the genes named
       positive hold ``named_share`` of the positive weight (equally), the others the rest;
    5. cell score: weighted sum of standardised expression (per-gene z-score) of the signature
       genes; with ``scale``, each class score is then standardised over cells;
    6. ``refine`` rounds of anchored self-training (``scelmo.annotation._elmo_refine``): the
       cells most confidently assigned to a class (the top 30% by margin) add ``n_genes`` data
       genes (the most over-expressed in them among the genes that correlate positively with
       the class's text genes); the text genes keep at least half their weight, so no class
       can lose the genes its text selected; a class whose confident cells do not express its
       text genes above the other cells keeps its text signature. No labels are used;
    7. with ``rematch`` (off by default; after ``refine``), the refined signatures ("programs") are given to
       the classes one to one (Hungarian algorithm) by their agreement with the text:
       ``sum_g w_p[g] A0[g, k]`` (``A0``: the text affinity of step 2, ``w_p``: program ``p``'s
       signature) plus, with ``gene_mentions``, ``mention_weight`` times the mean of
       ``d[g, k] * D_p[g]`` over the genes class ``k`` names (``D_p``: the standardised
       difference in mean expression between program ``p``'s cells and the others);
    8. ``smooth`` rounds of ``S <- (S + W S) / 2`` over the cells' neighbour graph ``W``
       (``scelmo.annotation._smoothing``);
    9. with ``abstain`` (default), label-free abstention (``scelmo.annotation._elmo_null``): a
       class whose texts name no varying gene and whose text genes are not among the genes
       most over-expressed in the cells it wins is absent (no cells; they go to their best
       present class), and a cell whose best class's signature does not beat random
       signatures of the same expression levels is ``"unknown"``.
``"cell"``: cosine of the (centred, with ``centre``) ``elmo_embed`` cell embeddings to the
    class text vectors, as LangCell compares its cell and text embeddings.

Probabilities are ``softmax(score / temperature)``; a class found absent gets probability 0.

The steps live in their own modules: the class texts' vectors and the encoder in
:mod:`~scelmo.annotation._elmo_text`, text signatures (1-4) in
:mod:`~scelmo.annotation._elmo_signatures`, gene-space scoring (5-9) in
:mod:`~scelmo.annotation._elmo_genes`, cell-space scoring in :mod:`~scelmo.annotation._elmo_cells`,
and what is read from the AnnData in :mod:`~scelmo.annotation._elmo_record`; this module is the
scorer that puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._elmo_cells import cell_scores
from ._elmo_genes import gene_scores
from ._elmo_refine import standardise_columns
from ._elmo_text import class_vectors, resolve_encoder

if TYPE_CHECKING:
    from scelmo.text import TextEncoder

    from ._elmo_record import ElmoInputs
    from ._zeroshot_options import ElmoZeroShotOptions

__all__ = ["elmo_scores", "softmax"]


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise ``softmax(scores / temperature)`` in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation._elmo_zeroshot import softmax
    >>> softmax(np.array([[0.0, 0.0]]), 1.0).tolist()
    [[0.5, 0.5]]
    """
    if not temperature > 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}.")
    z = np.asarray(scores, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _vectors(
    inputs: ElmoInputs,
    classes: Sequence[str],
    texts: dict[str, list[str]],
    encoder: TextEncoder | str | None,
    options: ElmoZeroShotOptions,
) -> tuple[np.ndarray, TextEncoder]:
    """The class vectors in the gene table's space, and the table's encoder that made them."""
    text_encoder = resolve_encoder(inputs.provenance, encoder)
    vectors = class_vectors(text_encoder, texts, classes, cache=options.cache, cache_dir=options.cache_dir)
    table_dim = inputs.provenance.get("dim") or (inputs.table.dim if inputs.table is not None else None)
    if table_dim is not None and int(table_dim) != vectors.shape[1]:
        raise ValueError(
            f"The encoder gives {vectors.shape[1]}-d vectors but the gene table is {table_dim}-d: they "
            "cannot come from the same encoder."
        )
    return vectors, text_encoder


def elmo_scores(
    inputs: ElmoInputs,
    classes: Sequence[str],
    texts: dict[str, list[str]],
    options: ElmoZeroShotOptions,
    *,
    encoder: TextEncoder | str | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Zero-shot elmo class probabilities ``(n_cells, n_classes)`` (see the module description).

    Parameters
    ----------
    inputs
        The gene table, matrix or cell embeddings (:func:`scelmo.annotation._elmo_record.elmo_inputs`).
    classes, texts
        The classes and their texts.
    options
        The elmo options.
    encoder
        The text encoder (default: the table's, from its provenance); another one is refused.

    Returns
    -------
    probabilities
        ``softmax(score / temperature)``; 0 for classes found absent (``abstain``).
    info
        ``provenance`` (encoder, gene table), ``matrix``, ``unknown_cells`` (``abstain``: cells
        that express their best class's genes no more than random ones), and the diagnostics of
        :func:`scelmo.annotation._elmo_genes.gene_scores` (``score="genes"``).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scelmo as se
    >>> from scelmo.annotation._elmo_record import elmo_inputs
    >>> from scelmo.annotation._elmo_zeroshot import elmo_scores
    >>> from scelmo.annotation._zeroshot_options import ElmoZeroShotOptions
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> table = se.pp.build_gene_embeddings(adata.raw.var_names, progress=False)  # doctest: +SKIP
    >>> options = ElmoZeroShotOptions()
    >>> texts = {"B": ["CD79A+ B cell"], "T": ["CD3E+ T cell"]}
    >>> probs, info = elmo_scores(elmo_inputs(adata, table, options), ["B", "T"], texts, options)  # doctest: +SKIP
    >>> info["mentions"]  # doctest: +SKIP
    {'B': ['CD79A+ -> CD79A'], 'T': ['CD3E+ -> CD3E']}
    """
    vectors, text_encoder = _vectors(inputs, classes, texts, encoder, options)
    info: dict[str, Any] = {
        "provenance": {
            "gene_table": {k: v for k, v in inputs.provenance.items() if k != "genes_without_text"},
            "encoder": text_encoder.params(),
        },
        "matrix": inputs.source,
    }
    if options.score == "cell":
        assert inputs.cells is not None  # elmo_inputs embeds the cells for score='cell'
        scores = cell_scores(inputs.cells, vectors, centre=options.centre, where=inputs.source)
    else:
        scores, found = gene_scores(inputs, vectors, classes, texts, text_encoder, options)
        info.update(found)
    if options.scale:
        scores = standardise_columns(scores)
    present = info.pop("present_classes", None)
    if present is not None and present.any():
        # an absent class takes no cell: its probability is 0
        scores = np.where(present[None, :], scores, -np.inf)
    return softmax(scores, options.resolved_temperature), info
