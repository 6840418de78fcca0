"""Class texts for zero-shot annotation: Cell Ontology definitions, a chat model, or your own."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scelmo._logging import logger

from ._ontology import CellOntology

__all__ = ["LANGCELL_TEMPLATE", "celltype_descriptions", "class_texts"]

#: LangCell's class text: "cell type: NAME. DEFINITION".
LANGCELL_TEMPLATE = "cell type: {name}. {definition}"
#: The prompt for ``source="llm"`` (scELMo's gene prompt, for cell types); ``{cell_type}`` is the label.
CELLTYPE_PROMPT = (
    "Please summarize the major function of cell type: {cell_type}. "
    "Use academic language in one paragraph and include the genes it expresses."
)
COLUMNS = [
    "term_id",
    "term_label",
    "match",
    "match_score",
    "matched_text",
    "definition",
    "synonyms",
    "text",
    "texts",
]


def _labels_list(labels: Iterable[str] | str) -> list[str]:
    if isinstance(labels, str):
        raise TypeError("`labels` must be a list of cell-type names; wrap a single label in a list.")
    out = [str(label) for label in labels]
    if not out:
        raise ValueError("`labels` is empty: give at least one cell-type name.")
    return list(dict.fromkeys(out))


def _format(template: str, name: str, definition: str) -> str:
    text = template.format(name=name, definition=definition).strip()
    return text if definition else text.rstrip(". ").rstrip() + "."


def celltype_descriptions(
    labels: Iterable[str],
    *,
    source: str | Mapping[str, str | Sequence[str]] = "cell_ontology",
    overrides: Mapping[str, str] | None = None,
    min_score: float = 0.4,
    template: str = LANGCELL_TEMPLATE,
    max_synonyms: int = 5,
    parents: bool = False,
    map_ontology: bool = True,
    ontology: CellOntology | None = None,
    prompt: str = CELLTYPE_PROMPT,
    cache: bool | str | os.PathLike = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    **llm_kwargs: Any,
) -> pd.DataFrame:
    """Describe cell types in text, mapping free-text labels to the Cell Ontology.

    Each label (for example ``"CD14+ Monocyte"``, ``"CD4+/CD25 T Reg"``) is matched to a Cell
    Ontology (CL) term through the terms' labels and exact synonyms, after normalising both
    sides (``+`` -> ``-positive``, abbreviations such as ``NK``, ``DC``, ``Treg`` spelled out, a
    missing ``cell`` added): exact matches first, then the same words in another order, then
    the best IDF-weighted word overlap if it reaches ``min_score``. Labels that match nothing
    are listed in a warning and in ``frame.attrs["unmapped"]``; map them with ``overrides``.

    Parameters
    ----------
    labels
        Cell-type names, or CL ids (``"CL:0000236"``).
    source
        - ``"cell_ontology"``: LangCell's text ``"cell type: NAME. DEFINITION"`` with the
          term's label and definition; ``texts`` also holds ``"cell type: NAME."``, one text
          per synonym and, with ``parents``, one ``"cell type: PARENT."`` per direct parent
          term. Unmapped labels get ``"cell type: LABEL."``.
        - ``"llm"``: a chat model describes each cell type (``prompt``, with ``{cell_type}``;
          options of :func:`scelmo.text.sources.llm_descriptions` such as ``model=``,
          ``api_key=``, ``base_url=``); answers are cached.
        - a dict ``label -> text`` (or ``label -> [texts]``): your texts, used as given.
    overrides
        ``label -> CL id`` for labels you map yourself.
    min_score
        Smallest weighted word overlap (0-1) accepted for a fuzzy match.
    template
        Format of the main text, with ``{name}`` and ``{definition}``.
    max_synonyms
        Most synonyms kept per term.
    parents
        Also describe each class by its direct parent terms in the ontology (``"Dendritic"``:
        ``"cell type: mononuclear phagocyte."``, ``"cell type: professional antigen presenting
        cell."``), which zero-shot annotation averages with the other texts. Off by default: on
        ``pbmc68k_reduced`` it helps some settings and hurts others (``benchmarks/annotation.py``).
    map_ontology
        Also map labels to CL terms when ``source`` is ``"llm"`` or a dict (needed for
        ontology-aware answers).
    ontology
        The Cell Ontology to match against (default: the release bundled with
        ``cellxgene-ontology-guide``, loaded once); pass one to reuse it across calls.
    prompt
        Prompt for ``source="llm"``.
    cache, cache_dir
        Cache of chat-model answers (``source="llm"``).
    progress
        Show a progress bar (``source="llm"``).
    **llm_kwargs
        Options of the chat-model source.

    Returns
    -------
    A DataFrame indexed by label with columns ``term_id``, ``term_label``, ``match`` (how it
    matched: ``"label"``, ``"synonym"``, ``"tokens"``, ``"fuzzy"``, ``"id"``, ``"user"``,
    ``"unmapped"``), ``match_score``, ``matched_text``, ``definition``, ``synonyms``,
    ``text`` (the main text) and ``texts`` (all texts of the class). ``attrs["unmapped"]``
    lists unmapped labels and ``attrs["provenance"]`` the source and CL release. Pass the
    frame to :func:`scelmo.tl.zeroshot_annotate`.

    Examples
    --------
    >>> import scelmo as se
    >>> frame = se.pp.celltype_descriptions(["CD14+ Monocyte", "CD4+/CD25 T Reg", "Dendritic"])
    >>> frame["term_id"].tolist()
    ['CL:0001054', 'CL:0000792', 'CL:0000451']
    >>> frame.loc["Dendritic", "text"].startswith("cell type: dendritic cell. A cell of hematopoietic origin")
    True
    >>> se.pp.celltype_descriptions(["Dendritic"], parents=True).loc["Dendritic", "texts"][-2:]
    ['cell type: mononuclear phagocyte.', 'cell type: professional antigen presenting cell.']
    >>> own = se.pp.celltype_descriptions(["B cell"], source={"B cell": "cell type: B cell. Makes antibodies."})
    >>> own.loc["B cell", "term_id"]
    'CL:0000236'
    """
    labels = _labels_list(labels)
    if ontology is None and (map_ontology or source == "cell_ontology"):
        ontology = CellOntology()
    frame = _ontology_frame(
        labels, ontology, min_score=min_score, overrides=overrides, max_synonyms=max_synonyms
    )
    if isinstance(source, Mapping):
        texts_per_class = _user_texts(labels, source)
        provenance: dict[str, Any] = {"source": "user"}
    elif source == "cell_ontology":
        texts_per_class = _ontology_texts(frame, ontology if parents else None, template)
        provenance = {"source": "cell_ontology", "template": template, "parents": parents}
    elif source == "llm":
        texts_per_class = _llm_texts(
            labels, frame, prompt=prompt, cache=cache, cache_dir=cache_dir, progress=progress, **llm_kwargs
        )
        provenance = {
            "source": "llm",
            "prompt": prompt,
            **{k: v for k, v in llm_kwargs.items() if k != "api_key"},
        }
    else:
        raise ValueError(f"`source` must be 'cell_ontology', 'llm' or a dict label -> text, got {source!r}.")
    if llm_kwargs and source != "llm":
        raise TypeError(f"Options {sorted(llm_kwargs)} apply to source='llm' only.")
    frame["text"] = [texts[0] for texts in texts_per_class]
    frame["texts"] = texts_per_class
    unmapped = [label for label in labels if ontology is not None and not frame.loc[label, "term_id"]]
    if ontology is not None:
        provenance.update({"cell_ontology": ontology.version, "cellxgene_schema": ontology.schema_version})
    provenance["min_score"] = min_score
    frame.attrs["unmapped"] = unmapped
    frame.attrs["provenance"] = provenance
    if unmapped:
        how = "their texts are the label alone" if source == "cell_ontology" else "they have no ontology id"
        warnings.warn(
            f"{len(unmapped)} of {len(labels)} labels matched no Cell Ontology term: {unmapped}; {how}. "
            "Pass overrides={label: 'CL:...'} to map them, or your own texts as a dict.",
            UserWarning,
            stacklevel=2,
        )
    logger.info(
        "cell-type texts for %d labels (%s); %d mapped to the Cell Ontology",
        len(labels),
        provenance["source"],
        len(labels) - len(unmapped) if ontology is not None else 0,
    )
    return frame[COLUMNS]


def _ontology_frame(
    labels: list[str],
    ontology: CellOntology | None,
    *,
    min_score: float,
    overrides: Mapping[str, str] | None,
    max_synonyms: int,
) -> pd.DataFrame:
    """One row per label: its Cell Ontology term, how it matched, its definition and synonyms."""
    matches = {}
    if ontology is not None:
        for found in ontology.match_many(labels, min_score=min_score, overrides=overrides):
            matches[found.query] = found
    rows = []
    for label in labels:
        match = matches.get(label)
        term_id = match.term_id if match is not None else None
        row: dict[str, Any] = {
            "term_id": term_id or "",
            "term_label": match.term_label if match is not None and match.term_label else "",
            "match": match.how if match is not None else "off",
            "match_score": float(match.score) if match is not None else np.nan,
            "matched_text": match.matched_text if match is not None and match.matched_text else "",
            "definition": ontology.definition(term_id) if term_id and ontology is not None else "",
            "synonyms": ontology.synonyms(term_id)[:max_synonyms] if term_id and ontology is not None else [],
        }
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(labels, name="label"))


def _user_texts(labels: list[str], source: Mapping[str, str | Sequence[str]]) -> list[list[str]]:
    """The texts of each label from the user's dict (a text or a list of texts per label)."""
    provided = {str(k): v for k, v in source.items()}
    missing = [label for label in labels if label not in provided]
    if missing:
        raise KeyError(
            f"No text for {missing[:5]} in the dict given as `source`; add them or drop the labels."
        )
    texts_per_class = []
    for label in labels:
        value = provided[label]
        texts = [value] if isinstance(value, str) else [str(v) for v in value]
        if not texts or any(not t.strip() for t in texts):
            raise ValueError(f"The text for {label!r} is empty.")
        texts_per_class.append(texts)
    return texts_per_class


def _ontology_texts(frame: pd.DataFrame, parents_from: CellOntology | None, template: str) -> list[list[str]]:
    """LangCell's text, the name and the synonyms of each mapped label (and its parents' names)."""
    texts_per_class = []
    for label, row in frame.iterrows():
        if row["term_id"]:
            name = row["term_label"]
            texts = [_format(template, name, row["definition"]), f"cell type: {name}."]
            texts += [f"cell type: {s}." for s in row["synonyms"]]
            if parents_from is not None:
                texts += [f"cell type: {p}." for p in parent_labels(parents_from, str(row["term_id"]))]
        else:
            texts = [_format(template, str(label), "")]
        texts_per_class.append(list(dict.fromkeys(texts)))
    return texts_per_class


def parent_labels(ontology: CellOntology, term_id: str) -> list[str]:
    """Labels of a term's direct parents (``is_a`` distance 1), ordered by id.

    Examples
    --------
    >>> from scelmo.annotation import CellOntology
    >>> from scelmo.annotation._descriptions import parent_labels
    >>> parent_labels(CellOntology(), "CL:0000451")
    ['mononuclear phagocyte', 'professional antigen presenting cell']
    """
    return [ontology.label(t) for t, d in sorted(ontology.ancestors(term_id).items()) if d == 1]


def _llm_texts(
    labels: list[str],
    frame: pd.DataFrame,
    *,
    prompt: str,
    cache: bool | str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    progress: bool,
    **llm_kwargs: Any,
) -> list[list[str]]:
    from scelmo.text._cache import resolve_cache
    from scelmo.text.sources import llm_descriptions

    if "{cell_type}" not in prompt:
        raise ValueError(f"The prompt must contain '{{cell_type}}' where the label goes; got {prompt!r}.")
    store = resolve_cache(cache, cache_dir)
    # The chat-model source fills "{gene}"; for cell types that slot holds the label.
    answers, _ = llm_descriptions(
        labels,
        cache=store,
        prompt=prompt.replace("{gene}", "{{gene}}").replace("{cell_type}", "{gene}"),
        progress=progress,
        **llm_kwargs,
    )
    out = []
    for label in labels:
        answer = answers.get(label)
        name = frame.loc[label, "term_label"] or label
        if not answer:
            raise RuntimeError(
                f"The chat model returned no text for {label!r}; retry or give texts as a dict."
            )
        out.append([f"cell type: {name}. {answer.strip()}"])
    return out


def class_texts(
    labels_or_texts: Sequence[str] | Mapping[str, str | Sequence[str]] | pd.DataFrame,
    *,
    descriptions: str = "all",
    ontology: CellOntology | None = None,
) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """Classes, their texts and their Cell Ontology ids from what the user passed.

    Parameters
    ----------
    labels_or_texts
        Cell-type names (texts built from the Cell Ontology), a dict class -> text(s), or the
        frame of :func:`scelmo.pp.celltype_descriptions`.
    descriptions
        Which texts of a ``celltype_descriptions`` frame to use: ``"all"`` (definition text,
        name, synonyms; their embeddings are averaged), ``"definition"`` (the LangCell text
        only) or ``"name"`` (``"cell type: NAME."`` only).
    ontology
        Reused when labels must be looked up.

    Returns
    -------
    classes, texts per class, ontology id per class (where known).

    Examples
    --------
    >>> from scelmo.annotation import class_texts
    >>> classes, texts, ids = class_texts({"B": "cell type: B cell.", "T": ["T cell", "T lymphocyte"]})
    >>> classes, texts["T"], ids
    (['B', 'T'], ['T cell', 'T lymphocyte'], {})
    """
    if descriptions not in ("all", "definition", "name"):
        raise ValueError(f"`descriptions` must be 'all', 'definition' or 'name', got {descriptions!r}.")
    if isinstance(labels_or_texts, Mapping):
        classes = [str(k) for k in labels_or_texts]
        texts: dict[str, list[str]] = {}
        for cls, value in labels_or_texts.items():
            items = [value] if isinstance(value, str) else [str(v) for v in value]
            if not items or any(not isinstance(t, str) or not t.strip() for t in items):
                raise ValueError(f"Class {cls!r} has an empty text.")
            texts[str(cls)] = items
        return classes, texts, {}
    if isinstance(labels_or_texts, pd.DataFrame):
        frame = labels_or_texts
        if "texts" not in frame.columns and "text" not in frame.columns:
            raise ValueError(
                "A DataFrame of class texts needs a 'text' or 'texts' column (as made by "
                "scelmo.pp.celltype_descriptions)."
            )
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            frame = celltype_descriptions(_labels_list(labels_or_texts), ontology=ontology)
        if frame.attrs.get("unmapped"):
            warnings.warn(
                f"No Cell Ontology term for {frame.attrs['unmapped']}: their class text is the label alone. "
                "Check the mapping with scelmo.pp.celltype_descriptions(labels) and pass its frame "
                "(with overrides=) or a dict of texts.",
                UserWarning,
                stacklevel=3,
            )
    classes = [str(c) for c in frame.index]
    texts = {}
    for cls, row in frame.iterrows():
        all_texts = list(row["texts"]) if "texts" in frame.columns else [str(row["text"])]
        if descriptions == "definition":
            chosen = all_texts[:1]
        elif descriptions == "name":
            chosen = all_texts[1:2] if len(all_texts) > 1 else all_texts[:1]
        else:
            chosen = all_texts
        texts[str(cls)] = chosen
    ids = {}
    if "term_id" in frame.columns:
        ids = {str(c): str(t) for c, t in frame["term_id"].items() if isinstance(t, str) and t}
    return classes, texts, ids
