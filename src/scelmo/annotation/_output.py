"""The one output format of every annotation method (zero-shot elmo, zero-shot LangCell, kNN).

For ``key`` (the ``key_added`` of the calling function) the writer sets

- ``adata.obs[key]``: the predicted label (categorical). Categories are the classes, then
  any Cell Ontology ancestor used for close calls, then ``"unknown"`` when a cell abstained;
- ``adata.obs[key + "_score"]``: the confidence of that label (float32): the probability of
  the top class, or the summed probability of the classes merged into an ancestor;
- ``adata.obsm[key + "_probs"]``: ``(n_obs, n_classes)`` float32 class probabilities, columns
  in the order of ``adata.uns[key]["classes"]``;
- ``adata.uns[key]``: ``method``, ``classes``, ``texts`` (class -> the texts embedded),
  ``ontology`` (class -> Cell Ontology id, where known), ``params``, ``provenance`` (encoder,
  gene table, reference...), ``checkpoint_hash`` (LangCell), ``n_unknown`` and
  ``n_ancestor``.

Everything in ``uns`` is written so that ``adata.write_h5ad`` can store it (no ``None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo._anndata import h5ad_safe

__all__ = ["UNKNOWN", "AnnotationResult", "h5ad_safe", "write_annotation"]

#: The label of cells that abstained.
UNKNOWN = "unknown"


@dataclass
class AnnotationResult:
    """What an annotation method produced, before it is written into an AnnData.

    Attributes
    ----------
    method
        ``"elmo"``, ``"langcell"``, ``"knn"``...
    classes
        Class names, in the column order of ``probs``.
    probs
        ``(n_cells, n_classes)`` probabilities (rows sum to one).
    labels
        Final label per cell (a class, an ontology ancestor or ``"unknown"``); default: the
        top class.
    score
        Confidence of each final label; default: the top probability.
    texts
        Class -> texts that were embedded (empty for kNN).
    ontology
        Class -> Cell Ontology id, where known.
    params
        Parameters of the call.
    provenance
        Encoder, gene table, reference, model...
    checkpoint_hash
        Hash of a model checkpoint (LangCell).
    extra
        More entries for ``uns[key]`` (method-specific diagnostics).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.annotation import AnnotationResult
    >>> result = AnnotationResult("demo", ["B cell", "T cell"], np.array([[0.3, 0.7]]))
    >>> result.labels.tolist(), result.score.tolist()
    (['T cell'], [0.699999988079071])
    """

    method: str
    classes: list[str]
    probs: np.ndarray
    labels: np.ndarray | None = None
    score: np.ndarray | None = None
    texts: dict[str, list[str]] = field(default_factory=dict)
    ontology: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    checkpoint_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        probs = np.asarray(self.probs, dtype=np.float32)
        if probs.ndim != 2 or probs.shape[1] != len(self.classes):
            raise ValueError(
                f"`probs` must have shape (n_cells, {len(self.classes)}) (one column per class), "
                f"got {probs.shape}."
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"Class names must be unique; got {self.classes}.")
        self.probs = probs
        top = probs.argmax(axis=1) if probs.shape[0] else np.zeros(0, dtype=int)
        if self.labels is None:
            self.labels = np.asarray(self.classes, dtype=object)[top]
        if self.score is None:
            self.score = probs[np.arange(probs.shape[0]), top]
        self.labels = np.asarray(self.labels, dtype=object)
        self.score = np.asarray(self.score, dtype=np.float32)
        if len(self.labels) != probs.shape[0] or len(self.score) != probs.shape[0]:
            raise ValueError("`labels` and `score` need one entry per row of `probs`.")


def _categories(classes: Sequence[str], labels: np.ndarray) -> list[str]:
    present = pd.unique(pd.Series(labels, dtype=object))
    extra = [str(v) for v in present if v not in set(classes) and v != UNKNOWN]
    categories = [*classes, *sorted(extra)]
    if UNKNOWN in set(present) and UNKNOWN not in categories:
        categories.append(UNKNOWN)
    return categories


def write_annotation(adata: AnnData, result: AnnotationResult, key: str) -> None:
    """Write an :class:`AnnotationResult` into ``adata`` (see the module description).

    Parameters
    ----------
    adata
        The annotated cells (``result`` has one row per ``adata`` row).
    result
        The method's output.
    key
        ``key_added`` of the calling function.

    Examples
    --------
    >>> import numpy as np
    >>> from anndata import AnnData
    >>> from scelmo.annotation import AnnotationResult, write_annotation
    >>> adata = AnnData(np.zeros((2, 1)))
    >>> result = AnnotationResult("demo", ["B cell", "T cell"], np.array([[0.9, 0.1], [0.2, 0.8]]))
    >>> write_annotation(adata, result, "demo")
    >>> adata.obs["demo"].tolist(), adata.obsm["demo_probs"].shape
    (['B cell', 'T cell'], (2, 2))
    """
    if result.probs.shape[0] != adata.n_obs:
        raise ValueError(
            f"The annotation has {result.probs.shape[0]} rows but adata has {adata.n_obs} cells."
        )
    labels = result.labels
    assert labels is not None  # AnnotationResult fills it in
    categories = _categories(result.classes, labels)
    adata.obs[key] = pd.Categorical(labels, categories=categories)
    adata.obs[f"{key}_score"] = result.score
    adata.obsm[f"{key}_probs"] = result.probs
    uns: dict[str, Any] = {
        "method": result.method,
        "classes": list(result.classes),
        "texts": {c: list(result.texts.get(c, [])) for c in result.classes if result.texts.get(c)},
        "ontology": {c: result.ontology[c] for c in result.classes if result.ontology.get(c)},
        "params": result.params,
        "provenance": result.provenance,
        "n_unknown": int(np.sum(labels == UNKNOWN)),
        "n_ancestor": int(np.sum(~np.isin(labels, [*result.classes, UNKNOWN]))),
        **result.extra,
    }
    if result.checkpoint_hash:
        uns["checkpoint_hash"] = str(result.checkpoint_hash)
    adata.uns[key] = h5ad_safe(uns)
