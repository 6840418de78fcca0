"""The zero-shot runner: class texts -> the method's scorer -> abstention -> ``AnnotationResult`` -> ``adata``.

Every method is a scorer, a function from plain inputs to ``(probabilities, info)``: elmo's
(:func:`scelmo.annotation._elmo_zeroshot.elmo_scores`, on what
:func:`scelmo.annotation._elmo_record.elmo_inputs` reads) and LangCell's
(:func:`scelmo.annotation._langcell_zeroshot.langcell_token_scores`, on the cells' tokens). The runner
does the rest once for all of them, as decoupler's ``_run`` does for its methods.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._abstention import decide
from ._descriptions import class_texts
from ._output import AnnotationResult, write_annotation
from ._zeroshot_options import ElmoZeroShotOptions, LangCellZeroShotOptions, build_options

if TYPE_CHECKING:
    from scelmo.gene_embeddings import GeneEmbeddings
    from scelmo.models.langcell import LangCell
    from scelmo.text import TextEncoder

__all__ = ["METHODS", "run_zeroshot"]

METHODS = ("elmo", "langcell")
#: Diagnostics of the elmo scorer stored in ``uns[key]``, in this order.
_ELMO_EXTRA = (
    "genes",
    "refined_genes",
    "kept_text",
    "mentions",
    "rematched",
    "absent",
    "presence",
    "coverage",
    "smoothed_on",
)


@dataclass
class _Sources:
    """The objects a scorer may need besides the cells: the gene table, the encoder, the model."""

    gene_embeddings: GeneEmbeddings | None = None
    encoder: TextEncoder | str | None = None
    model: LangCell | str | None = None


@dataclass
class _Scored:
    """A scorer's probabilities with what the runner records of its call."""

    probs: np.ndarray
    texts: dict[str, list[str]]
    params: dict[str, Any]
    provenance: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    abstained: np.ndarray | None = None
    checkpoint_hash: str | None = None


def _elmo(
    adata: AnnData,
    classes: list[str],
    texts: dict[str, list[str]],
    options: ElmoZeroShotOptions,
    sources: _Sources,
) -> _Scored:
    from ._elmo_record import elmo_inputs
    from ._elmo_zeroshot import elmo_scores

    inputs = elmo_inputs(adata, sources.gene_embeddings, options)
    probs, info = elmo_scores(inputs, classes, texts, options, encoder=sources.encoder)
    return _Scored(
        probs,
        texts,
        options.record(info["matrix"]),
        info["provenance"],
        extra={name: info[name] for name in _ELMO_EXTRA if name in info},
        abstained=info.get("unknown_cells"),
    )


def _langcell_probabilities(
    adata: AnnData, texts: list[str], model: LangCell | str, options: LangCellZeroShotOptions
) -> tuple[np.ndarray, dict[str, Any]]:
    """LangCell's scorer on the cells' tokens (tokenized now from the counts in ``adata.X`` if absent).

    A dask token matrix is handed over as it is: the scorer runs one task per row chunk.
    """
    from scelmo._anndata import cell_tokens, token_matrix
    from scelmo._matrix import is_dask

    from ._langcell_zeroshot import langcell_token_scores

    matrix = token_matrix(adata, options.tokens_key)
    tokens = matrix if is_dask(matrix) else cell_tokens(adata, options.tokens_key)
    return langcell_token_scores(tokens, texts, model, options)


def _langcell(
    adata: AnnData,
    classes: list[str],
    texts: dict[str, list[str]],
    options: LangCellZeroShotOptions,
    sources: _Sources,
) -> _Scored:
    model = sources.model
    if model is None:
        raise ValueError("method='langcell' needs model= (a scelmo.models.LangCell or a checkpoint folder).")
    # LangCell was trained on one text per class: "cell type: NAME. DEFINITION"
    first = [texts[c][0] for c in classes]
    probs, info = _langcell_probabilities(adata, first, model, options)
    info = dict(info or {})
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (adata.n_obs, len(first)):
        raise ValueError(
            f"LangCell's scorer returned shape {probs.shape}, expected ({adata.n_obs}, {len(first)})."
        )
    checkpoint_hash = info.pop("checkpoint_hash") if "checkpoint_hash" in info else None
    params = dict(info.pop("params", {}) or {})
    # the options as called (alpha is recorded even when CTM is off, where the scorer records None)
    params.update(
        {
            f.name: getattr(options, f.name)
            for f in dataclasses.fields(options)
            if isinstance(getattr(options, f.name), str | int | float | bool)
        }
    )
    provenance = dict(info.pop("provenance", {}) or {})
    return _Scored(
        probs,
        {c: [t] for c, t in zip(classes, first, strict=True)},
        params,
        provenance,
        extra=info,
        checkpoint_hash=checkpoint_hash or getattr(model, "checkpoint_hash", None),
    )


#: Method -> scorer; each takes its own options class (build_options picks it).
_SCORERS: dict[str, Callable[[AnnData, list[str], dict[str, list[str]], Any, _Sources], _Scored]] = {
    "elmo": _elmo,
    "langcell": _langcell,
}


def run_zeroshot(
    adata: AnnData,
    labels_or_texts: Sequence[str] | Mapping[str, str | Sequence[str]] | pd.DataFrame,
    *,
    method: str = "elmo",
    options: ElmoZeroShotOptions | LangCellZeroShotOptions | None = None,
    gene_embeddings: GeneEmbeddings | None = None,
    encoder: TextEncoder | str | None = None,
    model: LangCell | str | None = None,
    descriptions: str = "all",
    threshold: float | None = None,
    min_margin: float | None = None,
    ontology_gap: float | None = None,
    key_added: str | None = None,
) -> AnnotationResult:
    """Annotate cells from class texts with one method; write the result when ``key_added`` is given.

    What :func:`scelmo.tl.zeroshot_annotate` computes: the class texts
    (:func:`scelmo.annotation.class_texts`), the method's probabilities, abstention
    (:func:`scelmo.annotation.decide`), written with :func:`scelmo.annotation.write_annotation`.

    Parameters
    ----------
    adata
        The cells.
    labels_or_texts
        Class names, a dict class -> text(s), or a ``celltype_descriptions`` frame.
    method
        ``"elmo"`` or ``"langcell"``.
    options
        The method's options (:class:`~scelmo.annotation._zeroshot_options.ElmoZeroShotOptions`
        or :class:`~scelmo.annotation._zeroshot_options.LangCellZeroShotOptions`); default: the
        method's defaults.
    gene_embeddings, encoder
        The gene table and its text encoder (elmo).
    model
        A LangCell model or checkpoint folder (langcell).
    descriptions
        Which texts of each class (see :func:`scelmo.annotation.class_texts`).
    threshold, min_margin, ontology_gap
        Abstention and ontology merging (see :func:`scelmo.annotation.decide`).
    key_added
        Write into ``adata`` under this key (see :mod:`scelmo.annotation._output`); ``None``
        writes nothing.

    Returns
    -------
    The :class:`~scelmo.annotation.AnnotationResult`.

    On dask input (the expression matrix for elmo's ``score="genes"``, ``obsm[use_rep]`` for
    ``score="cell"``, the token matrix for LangCell) the cells x genes (dims, tokens) work runs
    as dask graphs of one task per row chunk, on the cluster when a ``distributed.Client`` is
    set; the statistics over all cells (per-gene means and deviations, gene correlations with
    the scores, group means for refinement, the mean embedding) are sums over the chunks, a
    few passes. The matrix, embeddings or tokens are never gathered in one process; the
    probabilities, labels and scores are computed (``obs`` is a pandas DataFrame and cannot
    hold a lazy column, and abstention reads the probabilities), so what is written is numpy.

    Examples
    --------
    >>> from scelmo.annotation._zeroshot import run_zeroshot
    >>> from scelmo.annotation._zeroshot_options import ElmoZeroShotOptions
    >>> result = run_zeroshot(adata, ["B cell", "T cell"], options=ElmoZeroShotOptions(n_genes=10),
    ...                       gene_embeddings=table)  # doctest: +SKIP
    >>> result.labels[:3]  # doctest: +SKIP
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    options = build_options(method, options)
    ontology = None
    if ontology_gap is not None and not isinstance(labels_or_texts, Mapping | pd.DataFrame):
        from ._ontology import CellOntology

        ontology = CellOntology()
    classes, texts, ontology_ids = class_texts(labels_or_texts, descriptions=descriptions, ontology=ontology)
    if len(classes) < 2:
        raise ValueError(f"Zero-shot annotation needs at least two classes, got {classes}.")
    scored = _SCORERS[method](adata, classes, texts, options, _Sources(gene_embeddings, encoder, model))
    decision = decide(
        scored.probs,
        classes,
        threshold=threshold,
        min_margin=min_margin,
        ontology_gap=ontology_gap,
        class_ontology=ontology_ids,
        ontology=ontology,
        abstain=scored.abstained,
    )
    extra = dict(scored.extra)
    if ontology_gap is not None:
        extra["ancestor_ids"] = {
            str(label): str(term)
            for label, term in zip(decision.labels, decision.ancestor_ids, strict=True)
            if term
        }
    common = {
        "descriptions": descriptions,
        "threshold": threshold,
        "min_margin": min_margin,
        "ontology_gap": ontology_gap,
    }
    result = AnnotationResult(
        method=method,
        classes=classes,
        probs=scored.probs,
        labels=decision.labels,
        score=decision.score,
        texts=scored.texts,
        ontology=ontology_ids,
        params={**common, **scored.params},
        provenance=scored.provenance,
        checkpoint_hash=scored.checkpoint_hash,
        extra=extra,
    )
    if key_added is not None:
        write_annotation(adata, result, key_added)
    return result
