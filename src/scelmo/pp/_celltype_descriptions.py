"""``pp.celltype_descriptions``: texts for cell types, from the Cell Ontology, a chat model or you."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from ..annotation._descriptions import CELLTYPE_PROMPT, LANGCELL_TEMPLATE
from ..annotation._descriptions import celltype_descriptions as _celltype_descriptions


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
    return _celltype_descriptions(
        labels,
        source=source,
        overrides=overrides,
        min_score=min_score,
        template=template,
        max_synonyms=max_synonyms,
        parents=parents,
        map_ontology=map_ontology,
        prompt=prompt,
        cache=cache,
        cache_dir=cache_dir,
        progress=progress,
        **llm_kwargs,
    )
