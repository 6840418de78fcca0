"""Cell Ontology lookups: free-text cell-type labels to CL terms, definitions, common ancestors.

The ontology is the one shipped with ``cellxgene-ontology-guide`` (labels, definitions,
exact synonyms and ancestors of every CL term), read offline.

Free-text labels such as ``"CD14+ Monocyte"`` or ``"CD4+/CD25 T Reg"`` are matched to CL term
labels and synonyms after the same normalisation on both sides (lower case, ``+`` ->
``-positive``, trailing ``-`` -> ``-negative``, common abbreviations such as ``NK``, ``DC``,
``Treg`` spelled out, a missing head noun completed with ``cell``): first exactly, then by
the token sets, then by an IDF-weighted overlap of the token sets (rare words such as
``monocyte`` or ``CD14`` count more than ``cell`` or ``positive``). A fuzzy match below
``min_score`` is reported as unmapped rather than guessed.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scelmo._optional import import_optional

__all__ = ["CellOntology", "OntologyMatch", "normalize_label"]

#: Abbreviations spelled out before matching (whole tokens, after lower-casing).
ABBREVIATIONS: dict[str, str] = {
    "t": "t cell",
    "b": "b cell",
    "nk": "natural killer cell",
    "nkt": "natural killer t cell",
    "ilc": "innate lymphoid cell",
    "treg": "regulatory t cell",
    "tregs": "regulatory t cell",
    "reg": "regulatory",
    "th": "t helper cell",
    "tfh": "t follicular helper cell",
    "mait": "mucosal invariant t cell",
    "ctl": "cytotoxic t cell",
    "dc": "dendritic cell",
    "dcs": "dendritic cell",
    "pdc": "plasmacytoid dendritic cell",
    "cdc": "conventional dendritic cell",
    "mdc": "myeloid dendritic cell",
    "mono": "monocyte",
    "monos": "monocyte",
    "mac": "macrophage",
    "macro": "macrophage",
    "mk": "megakaryocyte",
    "hsc": "hematopoietic stem cell",
    "hspc": "hematopoietic stem and progenitor cell",
    "mpp": "multipotent progenitor cell",
    "rbc": "erythrocyte",
    "ery": "erythrocyte",
    "neut": "neutrophil",
    "eos": "eosinophil",
    "baso": "basophil",
    "mem": "memory",
    "eff": "effector",
    "prog": "progenitor",
    "progenitors": "progenitor",
    "cells": "cell",
    "lymphocytes": "lymphocyte",
    "monocytes": "monocyte",
    "macrophages": "macrophage",
    "neutrophils": "neutrophil",
    "platelets": "platelet",
    "erythrocytes": "erythrocyte",
    "megakaryocytes": "megakaryocyte",
    "cytotoxic": "cytotoxic",
    "gd": "gamma delta",
    "gammadelta": "gamma delta",
    "ab": "alpha beta",
    "alphabeta": "alpha beta",
}

#: Words that can end a cell-type name; a label without one gets ``cell`` appended.
_HEAD_SUFFIXES = ("cell", "cyte", "phil", "phage", "blast", "platelet", "neuron", "clast", "some", "ocyte")
_TOKEN = re.compile(r"[a-z0-9]+")
_MARKER = re.compile(r"cd\d+[a-z]*")
_DROP = frozenset({"of", "the", "a", "an", "and", "or", "in", "to", "thymus", "derived"})


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


@functools.lru_cache(maxsize=65536)
def normalize_label(label: str) -> str:
    """Normalise a cell-type name for matching.

    Lower case, accents removed, ``CD14+`` -> ``cd14 positive``, ``CD25-`` (before a separator
    or the end) -> ``cd25 negative``, ``hi``/``lo`` kept as words, separators (``/ , _ -``)
    turned into spaces, abbreviations spelled out (:data:`ABBREVIATIONS`), filler words
    dropped, and ``cell`` appended when no word names a cell.

    Parameters
    ----------
    label
        A free-text label.

    Returns
    -------
    The normalised label (space-separated words).

    Examples
    --------
    >>> from scelmo.annotation import normalize_label
    >>> normalize_label("CD4+/CD25 T Reg")
    'cd4 positive cd25 t cell regulatory'
    >>> normalize_label("Dendritic")
    'dendritic cell'
    """
    text = _ascii(str(label)).lower()
    text = re.sub(r"([a-z0-9])\+", r"\1 positive ", text)
    text = re.sub(r"([a-z0-9])-(?=\s|/|,|$)", r"\1 negative ", text)
    text = re.sub(r"(\d)(hi|high|bright)\b", r"\1 high", text)
    text = re.sub(r"(\d)(lo|low|dim)\b", r"\1 low", text)
    words: list[str] = []
    for token in _TOKEN.findall(text):
        expansion = ABBREVIATIONS.get(token, token)
        for word in expansion.split():
            if word not in _DROP and word not in words:
                words.append(word)
    if words and not any(word.endswith(_HEAD_SUFFIXES) for word in words):
        words.append("cell")
    return " ".join(words)


def _tokens(label: str) -> frozenset[str]:
    return frozenset(normalize_label(label).split())


@dataclass(frozen=True)
class OntologyMatch:
    """How one free-text label was matched to the Cell Ontology.

    Attributes
    ----------
    query
        The label as given.
    term_id
        The CL id, or ``None`` when unmapped.
    term_label
        The term's label.
    matched_text
        The term label or synonym that matched.
    how
        ``"id"`` (the label was a CL id), ``"label"``, ``"synonym"`` (exact after
        normalisation), ``"tokens"`` (same words in another order), ``"fuzzy"`` (weighted word
        overlap), ``"user"`` (given by the caller) or ``"unmapped"``.
    score
        1 for exact matches; the weighted overlap (0-1) for fuzzy ones.
    """

    query: str
    term_id: str | None
    term_label: str | None
    matched_text: str | None
    how: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """As a plain dict.

        Examples
        --------
        >>> from scelmo.annotation import OntologyMatch
        >>> OntologyMatch("B", "CL:0000236", "B cell", "B cell", "label", 1.0).to_dict()["how"]
        'label'
        """
        return asdict(self)


class CellOntology:
    """The Cell Ontology (CL) shipped with ``cellxgene-ontology-guide``, read offline.

    Parameters
    ----------
    schema_version
        The CELLxGENE schema version whose CL release to use (default: the package's latest).

    Examples
    --------
    >>> from scelmo.annotation import CellOntology
    >>> cl = CellOntology()
    >>> cl.label("CL:0000236")
    'B cell'
    >>> cl.match("CD14+ Monocyte").term_label
    'CD14-positive monocyte'
    >>> cl.label(cl.common_ancestor(["CL:0000624", "CL:0000625"]))
    'mature alpha-beta T cell'
    """

    def __init__(self, schema_version: str | None = None) -> None:
        guide = import_optional("cellxgene_ontology_guide.ontology_parser", purpose="Cell Ontology lookups")
        parser = guide.OntologyParser(schema_version)
        self._parser = parser
        self._terms: dict[str, dict[str, Any]] = parser.cxg_schema.ontology("CL")
        info = parser.cxg_schema.supported_ontologies.get("CL", {})
        self.version: str = str(info.get("version", "unknown"))
        self.schema_version: str = str(parser.cxg_schema.version)
        self._index: _LabelIndex | None = None
        self._descendants: dict[str, list[str]] | None = None

    # ------------------------------------------------------------------ terms
    def __contains__(self, term_id: object) -> bool:
        return term_id in self._terms

    def _term(self, term_id: str) -> dict[str, Any]:
        try:
            return self._terms[term_id]
        except KeyError:
            raise KeyError(
                f"{term_id!r} is not a Cell Ontology term id (expected 'CL:' and 7 digits, e.g. 'CL:0000236')."
            ) from None

    def label(self, term_id: str) -> str:
        """The term's label.

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> CellOntology().label("CL:0000576")
        'monocyte'
        """
        return str(self._term(term_id)["label"])

    def definition(self, term_id: str) -> str:
        """The term's textual definition (empty when the term has none).

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> CellOntology().definition("CL:0000236")
        'A lymphocyte of B lineage that is capable of B cell mediated immunity.'
        """
        return str(self._term(term_id).get("description") or "")

    def synonyms(self, term_id: str) -> list[str]:
        """The term's exact synonyms.

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> CellOntology().synonyms("CL:0000236")
        ['B lymphocyte', 'B-cell', 'B-lymphocyte']
        """
        return list(self._term(term_id).get("synonyms") or [])

    def ancestors(self, term_id: str) -> dict[str, int]:
        """Ancestors of a term with their distance (1 = parent); the term itself is not included.

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> CellOntology().ancestors("CL:0000236")["CL:0000542"]
        2
        """
        return dict(self._term(term_id).get("ancestors") or {})

    def descendants(self, term_id: str) -> list[str]:
        """The current (not obsolete) terms that have ``term_id`` among their ancestors, sorted.

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> cl = CellOntology()
        >>> "CL:0001054" in cl.descendants("CL:0000576")  # CD14-positive monocyte is a monocyte
        True
        """
        self._term(term_id)
        if self._descendants is None:
            found: dict[str, list[str]] = {}
            for term, entry in self._terms.items():
                if entry.get("deprecated", False):
                    continue
                for ancestor in entry.get("ancestors") or {}:
                    found.setdefault(ancestor, []).append(term)
            self._descendants = {k: sorted(v) for k, v in found.items()}
        return list(self._descendants.get(term_id, []))

    def is_deprecated(self, term_id: str) -> bool:
        """Whether the term is obsolete.

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> CellOntology().is_deprecated("CL:0000236")
        False
        """
        return bool(self._term(term_id).get("deprecated", False))

    def common_ancestor(self, term_ids: Iterable[str]) -> str:
        """The nearest common ancestor of several terms (a term counts as its own ancestor).

        Among the terms that are ancestors of all inputs (or equal to them), the one with the
        smallest largest distance to the inputs; ties go to the smaller summed distance, then
        to the smaller id.

        Parameters
        ----------
        term_ids
            CL ids.

        Returns
        -------
        The CL id of the nearest common ancestor (``CL:0000000``, "cell", at worst).

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> cl = CellOntology()
        >>> cl.label(cl.common_ancestor(["CL:0000236", "CL:0000623"]))
        'lymphocyte'
        """
        ids = list(dict.fromkeys(term_ids))
        if not ids:
            raise ValueError("common_ancestor needs at least one term id.")
        distances: list[dict[str, int]] = [{**self.ancestors(t), t: 0} for t in ids]
        shared = set(distances[0]).intersection(*distances[1:])
        if not shared:
            return "CL:0000000"
        return min(shared, key=lambda a: (max(d[a] for d in distances), sum(d[a] for d in distances), a))

    # --------------------------------------------------------------- matching
    def _label_index(self) -> _LabelIndex:
        if self._index is None:
            self._index = _LabelIndex(
                (term_id, term["label"], term.get("synonyms") or [])
                for term_id, term in self._terms.items()
                if not term.get("deprecated", False) and term_id.startswith("CL:")
            )
        return self._index

    def match(self, label: str, *, min_score: float = 0.4) -> OntologyMatch:
        """Match one free-text label to a CL term (see the module description).

        Parameters
        ----------
        label
            A cell-type name (``"CD14+ Monocyte"``) or a CL id (``"CL:0001054"``).
        min_score
            Smallest weighted word overlap accepted for a fuzzy match.

        Returns
        -------
        An :class:`OntologyMatch`; ``term_id`` is ``None`` when nothing matched well enough.

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> match = CellOntology().match("CD56+ NK")
        >>> match.term_label, match.how
        ('natural killer cell', 'fuzzy')
        """
        text = str(label).strip()
        if re.fullmatch(r"CL[:_]\d{7}", text):
            term_id = text.replace("_", ":")
            if term_id in self._terms:
                return OntologyMatch(text, term_id, self.label(term_id), term_id, "id", 1.0)
            return OntologyMatch(text, None, None, None, "unmapped", 0.0)
        return self._label_index().match(text, min_score=min_score)

    def match_many(
        self,
        labels: Sequence[str],
        *,
        min_score: float = 0.4,
        overrides: Mapping[str, str] | None = None,
    ) -> list[OntologyMatch]:
        """Match several labels; ``overrides`` maps a label to a CL id you choose.

        Examples
        --------
        >>> from scelmo.annotation import CellOntology
        >>> [m.term_id for m in CellOntology().match_many(["B cell", "odd"], overrides={"odd": "CL:0000576"})]
        ['CL:0000236', 'CL:0000576']
        """
        overrides = dict(overrides or {})
        out = []
        for label in labels:
            if label in overrides:
                term_id = overrides[label]
                self._term(term_id)
                out.append(OntologyMatch(label, term_id, self.label(term_id), term_id, "user", 1.0))
            else:
                out.append(self.match(label, min_score=min_score))
        return out


class _LabelIndex:
    """Normalised CL labels and synonyms, with IDF weights of their words."""

    def __init__(self, entries: Iterable[tuple[str, str, Sequence[str]]]) -> None:
        self.exact: dict[str, tuple[str, str, str]] = {}
        self.by_tokens: dict[frozenset[str], tuple[str, str, str]] = {}
        self.docs: list[tuple[frozenset[str], str, str, str]] = []
        for term_id, label, synonyms in entries:
            for how, text in [("label", label), *(("synonym", s) for s in synonyms)]:
                norm = normalize_label(text)
                tokens = frozenset(norm.split())
                # Labels win over synonyms (they come first for each term; keep the first).
                if norm not in self.exact or (how == "label" and self.exact[norm][2] != "label"):
                    self.exact[norm] = (term_id, text, how)
                if tokens not in self.by_tokens or (how == "label" and self.by_tokens[tokens][2] != "label"):
                    self.by_tokens[tokens] = (term_id, text, how)
                self.docs.append((tokens, term_id, text, how))
        n_docs = len(self.docs)
        counts: dict[str, int] = {}
        for tokens, *_ in self.docs:
            for token in tokens:
                counts[token] = counts.get(token, 0) + 1
        self.idf = {t: math.log(1 + n_docs / c) for t, c in counts.items()}
        self.unknown_idf = math.log(1 + n_docs)
        self.labels = {term_id: text for _, term_id, text, how in self.docs if how == "label"}

    def weight(self, tokens: Iterable[str]) -> float:
        return sum(self.idf.get(t, self.unknown_idf) for t in tokens)

    def match(self, label: str, *, min_score: float) -> OntologyMatch:
        norm = normalize_label(label)
        if not norm:
            return OntologyMatch(label, None, None, None, "unmapped", 0.0)
        if norm in self.exact:
            term_id, text, how = self.exact[norm]
            return OntologyMatch(label, term_id, self.labels.get(term_id, text), text, how, 1.0)
        tokens = frozenset(norm.split())
        if tokens in self.by_tokens:
            term_id, text, _ = self.by_tokens[tokens]
            return OntologyMatch(label, term_id, self.labels.get(term_id, text), text, "tokens", 1.0)
        # (score, is the label, -number of words, term id, text): the first three rank candidates.
        best: tuple[float, bool, int, str, str] | None = None
        for doc_tokens, term_id, text, how in self.docs:
            shared = tokens & doc_tokens
            if not shared:
                continue
            # Tversky index: words the term adds (a more specific type than asked for) cost
            # twice as much as words of the label the term lacks (a more general type).
            # Markers (CD numbers) the term has and the label lacks contradict it: triple cost.
            common = self.weight(shared)
            extra = doc_tokens - tokens
            added = self.weight(extra) + 2 * self.weight(t for t in extra if _MARKER.fullmatch(t))
            score = common / (common + 0.5 * self.weight(tokens - doc_tokens) + added)
            # Ties: labels before synonyms, then shorter names.
            key = (score, how == "label", -len(doc_tokens))
            if best is None or key > best[:3]:
                best = (*key, term_id, text)
        if best is None or best[0] < min_score:
            return OntologyMatch(label, None, None, None, "unmapped", round(best[0], 4) if best else 0.0)
        score, _, _, term_id, text = best
        return OntologyMatch(
            label, term_id, self.labels.get(term_id, text), text, "fuzzy", round(float(score), 4)
        )
