"""The zero-shot dispatcher: class texts -> method scores -> probabilities -> labels."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._abstention import decide
from ._descriptions import class_texts
from ._elmo_zeroshot import default_temperature, elmo_scores, softmax
from ._output import AnnotationResult

__all__ = ["METHODS", "run_zeroshot"]

METHODS = ("elmo", "langcell")
_LANGCELL_MODULE = "scelmo.annotation._langcell_zeroshot"


def _langcell_scores(
    adata: AnnData, texts: list[str], model: Any, **kwargs: Any
) -> tuple[np.ndarray, dict[str, Any]]:
    try:
        module = importlib.import_module(_LANGCELL_MODULE)
    except ModuleNotFoundError as err:
        if err.name != _LANGCELL_MODULE:
            raise
        raise NotImplementedError(
            "method='langcell' is not available in this version of scelmo (its zero-shot scorer is not "
            "installed). Use method='elmo', or embed cells with scelmo.tl.langcell_encode and compare them "
            "to class texts yourself."
        ) from None
    scorer = getattr(module, "langcell_scores", None)
    if scorer is None:
        raise NotImplementedError(f"{_LANGCELL_MODULE} has no langcell_scores(adata, texts, model, ...).")
    if model is None:
        raise ValueError("method='langcell' needs model= (a scelmo.models.LangCell or a checkpoint folder).")
    out = scorer(adata, texts, model, **kwargs)
    info: dict[str, Any] = {}
    if isinstance(out, tuple):
        out, info = out[0], dict(out[1] or {})
    probs = np.asarray(out, dtype=np.float64)
    if probs.shape != (adata.n_obs, len(texts)):
        raise ValueError(
            f"langcell_scores returned shape {probs.shape}, expected ({adata.n_obs}, {len(texts)})."
        )
    info.setdefault("checkpoint_hash", getattr(model, "checkpoint_hash", None))
    return probs, info


def run_zeroshot(
    adata: AnnData,
    labels_or_texts: Sequence[str] | Mapping[str, str | Sequence[str]] | pd.DataFrame,
    *,
    method: str = "elmo",
    descriptions: str = "all",
    gene_embeddings: Any = None,
    encoder: Any = None,
    model: Any = None,
    score: str = "genes",
    use_rep: str = "X_elmo",
    layer: str | None = None,
    use_raw: bool | None = None,
    contrast: bool = True,
    n_genes: int = 20,
    refine: int = 3,
    gene_mentions: bool = True,
    mention_weight: float = 4.0,
    rematch: bool = False,
    centre: bool = True,
    scale: bool = True,
    abstain: bool = False,
    abstain_level: float = 0.05,
    unspell: bool = True,
    temperature: float | None = None,
    threshold: float | None = None,
    min_margin: float | None = None,
    ontology_gap: float | None = None,
    cache: Any = True,
    **method_kwargs: Any,
) -> AnnotationResult:
    """Everything :func:`scelmo.tl.zeroshot_annotate` computes, without writing it."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    ontology = None
    if ontology_gap is not None and not isinstance(labels_or_texts, Mapping | pd.DataFrame):
        from ._ontology import CellOntology

        ontology = CellOntology()
    classes, texts, ontology_ids = class_texts(labels_or_texts, descriptions=descriptions, ontology=ontology)
    if len(classes) < 2:
        raise ValueError(f"Zero-shot annotation needs at least two classes, got {classes}.")
    params: dict[str, Any] = {
        "descriptions": descriptions,
        "threshold": threshold,
        "min_margin": min_margin,
        "ontology_gap": ontology_gap,
    }
    extra: dict[str, Any] = {}
    checkpoint_hash = None
    if method == "elmo":
        unknown = sorted(set(method_kwargs) - {"cache_dir"})
        if unknown:
            raise TypeError(f"zeroshot_annotate(method='elmo') got unknown options {unknown}.")
        scores, info = elmo_scores(
            adata,
            classes,
            texts,
            gene_embeddings=gene_embeddings,
            encoder=encoder,
            score=score,  # type: ignore[arg-type]
            use_rep=use_rep,
            layer=layer,
            use_raw=use_raw,
            contrast=contrast,
            n_genes=n_genes,
            refine=refine,
            gene_mentions=gene_mentions,
            mention_weight=mention_weight,
            rematch=rematch,
            centre=centre,
            scale=scale,
            abstain=abstain,
            abstain_level=abstain_level,
            unspell=unspell,
            cache=cache,
            cache_dir=method_kwargs.get("cache_dir"),
        )
        temperature = default_temperature(scale) if temperature is None else temperature
        present = info.pop("present_classes", None)
        if present is not None and present.any():
            # an absent class takes no cell: its probability is 0
            scores = np.where(present[None, :], scores, -np.inf)
        probs = softmax(scores, temperature)
        abstained = info.pop("unknown_cells", None)
        params.update(
            score=score,
            use_rep=use_rep if score == "cell" else None,
            matrix=info["matrix"],
            contrast=contrast if score == "genes" else None,
            n_genes=n_genes if score == "genes" else None,
            refine=refine if score == "genes" else None,
            gene_mentions=gene_mentions if score == "genes" else None,
            mention_weight=mention_weight if score == "genes" and gene_mentions else None,
            rematch=rematch if score == "genes" and refine else None,
            centre=centre if score == "cell" else None,
            scale=scale,
            abstain=abstain if score == "genes" else None,
            abstain_level=abstain_level if score == "genes" and abstain else None,
            unspell=unspell if score == "genes" else None,
            temperature=temperature,
        )
        provenance = info["provenance"]
        for name in (
            "genes",
            "refined_genes",
            "kept_text",
            "mentions",
            "rematched",
            "absent",
            "presence",
            "coverage",
        ):
            if name in info:
                extra[name] = info[name]
    else:
        abstained = None
        first = [texts[c][0] for c in classes]
        texts = {c: [t] for c, t in zip(classes, first, strict=True)}
        probs, info = _langcell_scores(adata, first, model, **method_kwargs)
        checkpoint_hash = info.pop("checkpoint_hash", None)
        provenance = dict(info.pop("provenance", {}) or {})
        params.update(info.pop("params", {}) or {})
        params.update({k: v for k, v in method_kwargs.items() if isinstance(v, str | int | float | bool)})
        extra.update(info)
    decision = decide(
        probs,
        classes,
        threshold=threshold,
        min_margin=min_margin,
        ontology_gap=ontology_gap,
        class_ontology=ontology_ids,
        ontology=ontology,
        abstain=abstained,
    )
    if ontology_gap is not None:
        extra["ancestor_ids"] = {
            str(label): str(term)
            for label, term in zip(decision.labels, decision.ancestor_ids, strict=True)
            if term
        }
    return AnnotationResult(
        method=method,
        classes=classes,
        probs=probs,
        labels=decision.labels,
        score=decision.score,
        texts=texts,
        ontology=ontology_ids,
        params=params,
        provenance=provenance,
        checkpoint_hash=checkpoint_hash,
        extra=extra,
    )
