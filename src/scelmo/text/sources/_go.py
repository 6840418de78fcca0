"""Gene Ontology terms per human gene, read offline from Bioconductor's SQLite annotation files.

``org.Hs.eg.sqlite`` (Bioconductor package org.Hs.eg.db) maps Entrez genes to symbols
(``gene_info``), aliases (``alias``) and GO ids with evidence codes (``go_bp``, ``go_mf``);
``GO.sqlite`` (package GO.db) names the GO ids (``go_term``). Both ship as plain SQLite files
in the Bioconductor source tarballs and in Debian's ``r-bioc-org.hs.eg.db`` / ``r-bioc-go.db``
packages (``scripts/fetch_go_sqlite.sh`` places them in ``data_dir()/go/``).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "EVIDENCE_RANK",
    "GO_FILES",
    "GOAnnotations",
    "find_go_annotations",
]

ORG_FILE = "org.Hs.eg.sqlite"
GO_FILE = "GO.sqlite"
GO_FILES = (ORG_FILE, GO_FILE)

#: Evidence classes, most trusted first: experimental, curator or author statements,
#: phylogenetic or sequence-based inference, electronic annotation. Unlisted codes (ND) rank last.
EVIDENCE_RANK: dict[str, int] = {
    **dict.fromkeys(("EXP", "IDA", "IPI", "IMP", "IGI", "IEP", "HTP", "HDA", "HMP", "HGI", "HEP"), 0),
    **dict.fromkeys(("IC", "TAS", "NAS"), 1),
    **dict.fromkeys(("IBA", "IBD", "IKR", "IRD", "ISS", "ISO", "ISA", "ISM", "IGC", "RCA"), 2),
    "IEA": 3,
}
_UNRANKED = 4
_CHUNK = 500
_ONTOLOGY_TABLES = {"BP": "go_bp", "MF": "go_mf"}


def _connect_readonly(path: Path) -> sqlite3.Connection:
    # immutable=1: the files never change under us, so SQLite skips locking (also works on
    # read-only media such as a system package folder).
    return sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, check_same_thread=False
    )


def _find_in_folder(folder: Path) -> tuple[Path, Path] | None:
    direct = [folder / name for name in GO_FILES]
    if all(p.is_file() for p in direct):
        return direct[0], direct[1]
    # An extracted Debian package or Bioconductor tarball keeps them deeper (…/extdata/).
    found = []
    for name in GO_FILES:
        hits = sorted(folder.rglob(name))
        if not hits:
            return None
        found.append(hits[0])
    return found[0], found[1]


def find_go_annotations(
    go_annotations: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
) -> tuple[Path, Path] | None:
    """Locate ``org.Hs.eg.sqlite`` and ``GO.sqlite``.

    Parameters
    ----------
    go_annotations
        A folder that holds both files (directly or in subfolders, as in an extracted Debian
        package or Bioconductor tarball), or the two file paths ``(org, go)``. ``None``: look in
        ``data_dir()/go/``.

    Returns
    -------
    ``(org_path, go_path)``, or ``None`` when ``go_annotations`` is ``None`` and the default
    folder lacks them.

    Raises
    ------
    FileNotFoundError
        When paths were given explicitly but the files are not there.

    Examples
    --------
    >>> from scelmo.text.sources import find_go_annotations
    >>> find_go_annotations()  # doctest: +SKIP
    (PosixPath('.../go/org.Hs.eg.sqlite'), PosixPath('.../go/GO.sqlite'))
    """
    how_to = (
        "Get them with scripts/fetch_go_sqlite.sh (Debian/Ubuntu), or from the Bioconductor source "
        "tarballs of org.Hs.eg.db and GO.db (inst/extdata/), and put both in data_dir()/go/."
    )
    if go_annotations is None:
        from scelmo.datasets import data_dir

        folder = Path(data_dir()) / "go"
        if not folder.is_dir():
            return None
        return _find_in_folder(folder)
    if isinstance(go_annotations, str | os.PathLike):
        folder = Path(go_annotations).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"go_annotations={os.fspath(go_annotations)!r} is not a folder. Pass the folder holding "
                f"{ORG_FILE} and {GO_FILE}, or the two file paths. {how_to}"
            )
        found = _find_in_folder(folder)
        if found is None:
            raise FileNotFoundError(f"No {ORG_FILE} and {GO_FILE} under {folder}. {how_to}")
        return found
    paths = [Path(p).expanduser() for p in go_annotations]
    if len(paths) != 2:
        raise ValueError(f"go_annotations as a sequence must be the two files ({ORG_FILE}, {GO_FILE}).")
    by_name = {p.name: p for p in paths}
    org, go = by_name.get(ORG_FILE, paths[0]), by_name.get(GO_FILE, paths[1])
    for p in (org, go):
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist. {how_to}")
    return org, go


class GOAnnotations:
    """GO biological-process and molecular-function term names for human genes, offline.

    Parameters
    ----------
    org_path
        ``org.Hs.eg.sqlite``.
    go_path
        ``GO.sqlite``.

    Examples
    --------
    >>> from scelmo.text.sources import GOAnnotations, find_go_annotations
    >>> go = GOAnnotations(*find_go_annotations())  # doctest: +SKIP
    >>> go.terms(["CD3E"], max_terms=3)["CD3E"]["BP"]  # doctest: +SKIP
    ['positive regulation of T cell proliferation', ...]
    """

    def __init__(self, org_path: str | os.PathLike, go_path: str | os.PathLike) -> None:
        self.org_path = Path(org_path)
        self.go_path = Path(go_path)
        self._conn = _connect_readonly(self.org_path)
        try:
            self._conn.execute(
                "ATTACH DATABASE ? AS godb", (f"{self.go_path.resolve().as_uri()}?mode=ro&immutable=1",)
            )
            self._conn.execute("SELECT 1 FROM gene_info LIMIT 1").fetchall()
            self._conn.execute("SELECT 1 FROM godb.go_term LIMIT 1").fetchall()
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise ValueError(
                f"{self.org_path} / {self.go_path} are not the Bioconductor org.Hs.eg.db and GO.db SQLite "
                f"files ({err}). Fetch them again (scripts/fetch_go_sqlite.sh)."
            ) from err
        self._gene_counts: dict[str, dict[str, int]] = {}

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def metadata(self) -> dict[str, str]:
        """Source dates of the annotation, for provenance.

        Examples
        --------
        >>> from scelmo.text.sources import GOAnnotations, find_go_annotations
        >>> GOAnnotations(*find_go_annotations()).metadata()["go_date"]  # doctest: +SKIP
        '2022-07-01'
        """
        meta = dict(self._conn.execute("SELECT name, value FROM metadata").fetchall())
        return {
            "gene_go_source": f"{ORG_FILE} ({meta.get('GOEGSOURCENAME', 'Entrez Gene')} {meta.get('GOEGSOURCEDATE', '?')})",
            "go_date": meta.get("GOSOURCEDATE", "?"),
        }

    def _in_chunks(self, sql: str, values: Sequence, *extra: object) -> list[tuple]:
        rows: list[tuple] = []
        for start in range(0, len(values), _CHUNK):
            chunk = list(values[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            rows.extend(self._conn.execute(sql.format(marks=marks), (*extra, *chunk)).fetchall())
        return rows

    def internal_ids(self, symbols: Iterable[str], *, entrez: dict[str, str] | None = None) -> dict[str, int]:
        """Map gene symbols to the database's gene rows.

        By official symbol first, then by the Entrez id given in ``entrez``, then by an alias
        that names exactly one gene.

        Parameters
        ----------
        symbols
            Gene symbols.
        entrez
            ``symbol -> Entrez gene id`` from another table, used for symbols not found.

        Returns
        -------
        ``symbol -> internal id`` for the symbols found.

        Examples
        --------
        >>> from scelmo.text.sources import GOAnnotations, find_go_annotations
        >>> "CD3E" in GOAnnotations(*find_go_annotations()).internal_ids(["CD3E"])  # doctest: +SKIP
        True
        """
        symbols = list(dict.fromkeys(symbols))
        ids = dict(self._in_chunks("SELECT symbol, _id FROM gene_info WHERE symbol IN ({marks})", symbols))
        rest = [s for s in symbols if s not in ids and entrez and entrez.get(s)]
        if rest and entrez:  # rest is only non-empty with an entrez map
            by_entrez: dict[str, object] = dict(
                self._in_chunks(
                    "SELECT gene_id, _id FROM genes WHERE gene_id IN ({marks})",
                    [str(entrez[s]) for s in rest],
                )
            )
            for s in rest:
                if str(entrez[s]) in by_entrez:
                    ids[s] = by_entrez[str(entrez[s])]
        rest = [s for s in symbols if s not in ids]
        if rest:
            hits: dict[str, set[int]] = {}
            for alias, _id in self._in_chunks(
                "SELECT alias_symbol, _id FROM alias WHERE alias_symbol IN ({marks})", rest
            ):
                hits.setdefault(alias, set()).add(_id)
            ids.update({alias: next(iter(found)) for alias, found in hits.items() if len(found) == 1})
        return ids

    def gene_names(self, ids: dict[str, int]) -> dict[str, str]:
        """NCBI full gene names for ``symbol -> internal id``.

        Examples
        --------
        >>> from scelmo.text.sources import GOAnnotations, find_go_annotations
        >>> go = GOAnnotations(*find_go_annotations())  # doctest: +SKIP
        >>> go.gene_names(go.internal_ids(["CD3E"]))  # doctest: +SKIP
        {'CD3E': 'CD3 epsilon subunit of T-cell receptor complex'}
        """
        rows = dict(
            self._in_chunks(
                "SELECT _id, gene_name FROM gene_info WHERE _id IN ({marks})", list(set(ids.values()))
            )
        )
        return {s: rows[i] for s, i in ids.items() if i in rows}

    def _counts(self, ontology: str) -> dict[str, int]:
        if ontology not in self._gene_counts:
            table = _ONTOLOGY_TABLES[ontology]
            self._gene_counts[ontology] = dict(
                self._conn.execute(
                    f"SELECT go_id, COUNT(DISTINCT _id) FROM {table} GROUP BY go_id"
                ).fetchall()
            )
        return self._gene_counts[ontology]

    def terms(
        self,
        symbols: Iterable[str],
        *,
        max_terms: int | None = 10,
        entrez: dict[str, str] | None = None,
    ) -> dict[str, dict[str, list[str]]]:
        """GO term names per gene: biological process (``"BP"``) and molecular function (``"MF"``).

        Terms are ranked, per gene and ontology, by their best evidence
        (:data:`EVIDENCE_RANK`: experimental, then curated statements, then inferred from
        sequence or phylogeny, then electronic), then by specificity (fewer annotated human
        genes first), then by name; the first ``max_terms`` are kept, in that order. The
        ranking depends only on the annotation files, so the text is reproducible.

        Parameters
        ----------
        symbols
            Gene symbols.
        max_terms
            Most terms per gene and ontology (``None``: all).
        entrez
            ``symbol -> Entrez id`` for symbols the database does not know (see :meth:`internal_ids`).

        Returns
        -------
        ``symbol -> {"BP": [...], "MF": [...]}`` for genes found in the database.

        Examples
        --------
        >>> from scelmo.text.sources import GOAnnotations, find_go_annotations
        >>> go = GOAnnotations(*find_go_annotations())  # doctest: +SKIP
        >>> "T cell receptor signaling pathway" in go.terms(["CD3E"])["CD3E"]["BP"]  # doctest: +SKIP
        True
        """
        if max_terms is not None and max_terms < 0:
            raise ValueError(f"max_terms must be >= 0 or None, got {max_terms}.")
        ids = self.internal_ids(symbols, entrez=entrez)
        by_id: dict[int, dict[str, list[str]]] = {}
        for ontology, table in _ONTOLOGY_TABLES.items():
            counts = self._counts(ontology)
            rows = self._in_chunks(
                f"SELECT a._id, a.go_id, a.evidence, t.term FROM {table} a "
                "JOIN godb.go_term t ON t.go_id = a.go_id WHERE a._id IN ({marks})",
                list(set(ids.values())),
            )
            best: dict[tuple[int, str], tuple[int, int, str]] = {}
            for _id, go_id, evidence, term in rows:
                key = (EVIDENCE_RANK.get(evidence, _UNRANKED), counts.get(go_id, 0), term)
                if (_id, go_id) not in best or key < best[(_id, go_id)]:
                    best[(_id, go_id)] = key
            ranked: dict[int, list[tuple[int, int, str]]] = {}
            for (_id, _go), key in best.items():
                ranked.setdefault(_id, []).append(key)
            for _id, keys in ranked.items():
                names = list(dict.fromkeys(term for *_, term in sorted(keys)))
                by_id.setdefault(_id, {"BP": [], "MF": []})[ontology] = names[:max_terms]
        return {s: by_id.get(i, {"BP": [], "MF": []}) for s, i in ids.items()}
