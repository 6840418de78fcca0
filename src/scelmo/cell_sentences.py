"""Cell sentences: each cell as the text of its most expressed gene symbols (GenePT-s, Cell2Sentence).

A cell's sentence is the symbols of its ``n_genes`` most expressed genes, highest first,
joined by single spaces. The rule, in full:

- only positive values count: a gene with zero (or missing) expression is never in a sentence;
- genes are ordered by descending value; equal values keep the order of the matrix columns
  (the gene that comes first in ``var_names`` comes first), so a sentence is deterministic;
- a column without a symbol (an Ensembl id with no symbol in the map, an empty name) takes
  no place: the sentence holds the top ``n_genes`` genes that *have* a symbol;
- a cell with no expressed gene gets the empty sentence ``""``.

Ranks are taken within a cell, so raw counts, normalised counts and ``log1p`` of either give
the same sentences (all are increasing functions of the counts within one cell).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._checks import check_values
from ._matrix import iter_row_blocks

__all__ = ["DEFAULT_N_GENES", "cell_sentences", "iter_cell_sentences", "sentence_symbols"]

#: Symbols per sentence by default. all-MiniLM-L6-v2 reads at most 256 word pieces, ``[CLS]``
#: and ``[SEP]`` included; human gene symbols take 3.2 to 3.4 word pieces on average in the
#: evaluation data (pbmc68k, Baron pancreas, a 10x immune sample), and with 60 symbols the
#: longest sentence there took 252 word pieces (64 symbols: 264, so some were cut).
DEFAULT_N_GENES = 60


def sentence_symbols(var_names: Iterable[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """The word each gene contributes to a sentence: its symbol, or ``""`` (left out).

    Symbols are used as they are (the names a user sees); Ensembl ids (any version) are
    mapped to their HGNC symbol with :func:`scelmo.gene_ids.ensembl_to_symbol`, since a text
    encoder knows genes by their symbols. Names that are empty, or ids without a symbol,
    give ``""``.

    Parameters
    ----------
    var_names
        Gene names of the matrix columns, e.g. ``adata.var_names``.

    Returns
    -------
    ``(words, report)``: an object array with one word per column, and a dict with
    ``id_type`` (``"symbol"``, ``"ensembl"`` or ``"mixed"``), ``n_genes``, ``n_without_symbol``
    and ``without_symbol_examples`` (up to 10 names).

    Examples
    --------
    >>> from scelmo.cell_sentences import sentence_symbols
    >>> words, report = sentence_symbols(["CD3E", "", "MS4A1"])
    >>> words.tolist(), report["n_without_symbol"]
    (['CD3E', '', 'MS4A1'], 1)
    """
    from .gene_ids import is_ensembl, strip_version

    names = np.array([str(n) for n in var_names], dtype=object)
    ids = is_ensembl(names) if len(names) else np.zeros(0, dtype=bool)
    words = names.copy()
    if ids.any():
        from .gene_ids import ensembl_to_symbol

        to_symbol = ensembl_to_symbol()
        stripped = strip_version(names[ids])
        words[ids] = np.array([to_symbol.get(str(k), "") for k in stripped], dtype=object)
    words = np.array([w.strip() for w in words], dtype=object)
    missing = words == ""
    id_type = "ensembl" if ids.all() and len(ids) else ("mixed" if ids.any() else "symbol")
    report = {
        "id_type": id_type,
        "n_genes": len(names),
        "n_without_symbol": int(missing.sum()),
        "without_symbol_examples": [str(n) for n in names[missing][:10]],
    }
    return words, report


def _block_sentences(
    block: np.ndarray | sp.csr_matrix, words: np.ndarray, keep: np.ndarray, n_genes: int, start: int = 0
) -> list[str]:
    csr = sp.csr_matrix(block) if isinstance(block, np.ndarray) else block
    # Sentences rank expression: counts or log-normalised values, never scaled ones.
    check_values(csr, start=start, where="The expression matrix", require="nonnegative")
    n_rows = csr.shape[0]
    counts = np.diff(csr.indptr)
    rows = np.repeat(np.arange(n_rows), counts)
    values = np.asarray(csr.data)
    columns = np.asarray(csr.indices)
    use = (values > 0) & keep[columns]
    rows, values, columns = rows[use], values[use], columns[use]
    # Sort by cell, then descending value, then column (ties keep the gene order).
    order = np.lexsort((columns, -values, rows))
    rows, columns = rows[order], columns[order]
    starts = np.searchsorted(rows, np.arange(n_rows + 1))
    rank = np.arange(len(rows)) - starts[rows]
    top = rank < n_genes
    rows, columns = rows[top], columns[top]
    bounds = np.searchsorted(rows, np.arange(n_rows + 1))
    chosen = words[columns]
    return [" ".join(chosen[bounds[i] : bounds[i + 1]]) for i in range(n_rows)]


def iter_cell_sentences(
    matrix: Any, words: np.ndarray, *, n_genes: int = DEFAULT_N_GENES, chunk_size: int = 1024
) -> Iterator[tuple[int, int, list[str]]]:
    """Yield ``(start, stop, sentences)`` over blocks of cells.

    Parameters
    ----------
    matrix
        Cells x genes: dense, scipy sparse, backed or dask (read with
        :func:`scelmo._matrix.iter_row_blocks`, never densified whole).
    words
        One word per column (see :func:`sentence_symbols`); ``""`` leaves a column out.
    n_genes
        Symbols per sentence at most.
    chunk_size
        Cells per block.

    Yields
    ------
    start, stop
        The block's rows.
    sentences
        One sentence per row.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_sentences import iter_cell_sentences
    >>> words = np.array(["A", "B", "C"], dtype=object)
    >>> [s for _, _, s in iter_cell_sentences(np.array([[1, 3, 0], [0, 0, 0]]), words, n_genes=5)]
    [['B A', '']]
    """
    if not isinstance(n_genes, int | np.integer) or isinstance(n_genes, bool) or n_genes < 1:
        raise ValueError(f"n_genes must be a positive integer, got {n_genes!r}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    words = np.asarray(words, dtype=object)
    if words.shape != (matrix.shape[1],):
        raise ValueError(
            f"Got {len(words)} gene words for a matrix with {matrix.shape[1]} columns; pass one per column."
        )
    keep = words != ""
    fmt = getattr(matrix, "format", None)
    if sp.issparse(matrix) and fmt != "csr":
        # Row blocks of CSC (or COO) storage would rescan the whole matrix for every block.
        matrix = sp.csr_matrix(matrix)
    for start, stop, block in iter_row_blocks(matrix, chunk_size):
        yield start, stop, _block_sentences(block, words, keep, int(n_genes), start)


def cell_sentences(
    matrix: Any, var_names: Iterable[str], *, n_genes: int = DEFAULT_N_GENES, chunk_size: int = 1024
) -> list[str]:
    """The sentence of every cell: its top ``n_genes`` expressed gene symbols, highest first.

    Parameters
    ----------
    matrix
        Cells x genes expression (counts or log-normalised; any matrix
        :func:`iter_cell_sentences` reads).
    var_names
        Gene symbols or Ensembl ids of the columns (ids are mapped to symbols, see
        :func:`sentence_symbols`).
    n_genes
        Symbols per sentence at most.
    chunk_size
        Cells per block.

    Returns
    -------
    One sentence per cell, in row order; see the module docstring for the rule.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_sentences import cell_sentences
    >>> x = np.array([[0.0, 2.0, 5.0, 2.0], [1.0, 0.0, 0.0, 0.0]])
    >>> cell_sentences(x, ["CD3E", "MS4A1", "LYZ", "NKG7"], n_genes=2)
    ['LYZ MS4A1', 'CD3E']
    """
    words, _ = sentence_symbols(var_names)
    out: list[str] = []
    for _, _, sentences in iter_cell_sentences(matrix, words, n_genes=n_genes, chunk_size=chunk_size):
        out.extend(sentences)
    return out
