"""The AnnData boundary: what the tools read from an AnnData and how they write into it.

The expression matrix a tool reads (scanpy's ``layer`` / ``use_raw`` rule), the cells' tokens
(read, or tokenized now), keys that ``.h5ad`` can store, and values ``uns`` can store. The
records tools leave in ``uns`` have typed readers in :mod:`scelmo._records`; the value checks
of a matrix are in :mod:`scelmo._checks`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ._logging import logger
from ._matrix import is_dask
from ._records import TokensRecord, h5ad_safe
from .cell_tokens import MAX_LENGTH, CellTokens, lazy_rank_value_encode, match_genes, rank_value_encode

__all__ = [
    "Expression",
    "cell_tokens",
    "check_key",
    "expression_matrix",
    "h5ad_safe",
    "token_matrix",
    "tokenize_into",
]


@dataclass(frozen=True)
class Expression:
    """The expression matrix a tool reads, with its genes and where it came from.

    Attributes
    ----------
    matrix
        The cells x genes matrix (dense, scipy sparse, backed or dask), not copied.
    var
        The gene annotations of that matrix (``adata.raw.var`` for raw, else ``adata.var``).
    where
        Its name in messages: ``"adata.X"``, ``"adata.raw.X"`` or ``"adata.layers['counts']"``.
    source
        What ``uns[...]['params']['matrix']`` records: ``"X"``, ``"raw"`` or ``"layers['counts']"``.
    layer
        The layer read, or ``None``.
    use_raw
        Whether ``adata.raw`` was read.
    """

    matrix: Any
    var: pd.DataFrame
    where: str
    source: str
    layer: str | None
    use_raw: bool

    @property
    def var_names(self) -> pd.Index:
        """The matrix's gene names (the index of :attr:`var`)."""
        return self.var.index

    def gene_names(self, gene_key: str | None = None) -> np.ndarray:
        """The genes as an object array: the var names, or the ``var`` column ``gene_key``.

        Examples
        --------
        >>> import anndata as ad, numpy as np, pandas as pd
        >>> from scelmo._anndata import expression_matrix
        >>> adata = ad.AnnData(np.ones((1, 2)), var=pd.DataFrame({"symbol": ["CD3E", "MS4A1"]}, index=["a", "b"]))
        >>> expression_matrix(adata).gene_names("symbol").tolist()
        ['CD3E', 'MS4A1']
        """
        if gene_key is None:
            return np.asarray(self.var.index, dtype=object)
        if gene_key not in self.var.columns:
            table = "adata.raw.var" if self.use_raw else "adata.var"
            raise KeyError(
                f"{table} has no column {gene_key!r}; it has {list(self.var.columns)}. "
                "Pass the column that holds the gene ids, or leave it out to use the var names."
            )
        return np.asarray(self.var[gene_key], dtype=object)


def expression_matrix(adata: AnnData, *, layer: str | None = None, use_raw: bool | None = None) -> Expression:
    """The matrix a tool reads: ``adata.X``, ``adata.layers[layer]`` or ``adata.raw.X``.

    ``use_raw=None`` follows scanpy: ``adata.raw`` when it exists and no ``layer`` is given;
    ``use_raw=False`` never reads it.

    Parameters
    ----------
    adata
        The data.
    layer
        Read ``adata.layers[layer]``.
    use_raw
        Read ``adata.raw`` (``None``: scanpy's rule above).

    Returns
    -------
    The :class:`Expression` chosen.

    Raises
    ------
    ValueError
        If both ``layer`` and ``use_raw=True`` are given, ``adata.raw`` is asked for but
        absent, or the chosen matrix is empty.
    KeyError
        If ``layer`` is not a layer of ``adata`` (the message lists the layers).

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo._anndata import expression_matrix
    >>> adata = ad.AnnData(np.ones((2, 3)), layers={"counts": np.ones((2, 3))})
    >>> expression_matrix(adata, layer="counts").where
    "adata.layers['counts']"
    """
    if layer is not None and use_raw:
        raise ValueError("Pass either `layer` or `use_raw=True`, not both: adata.raw has no layers.")
    if use_raw is None:
        use_raw = layer is None and adata.raw is not None
    if use_raw:
        if adata.raw is None:
            raise ValueError(
                "use_raw=True, but adata.raw is empty. Pass `layer=` or put the matrix in adata.X."
            )
        chosen = Expression(adata.raw.X, adata.raw.var, "adata.raw.X", "raw", None, True)
    elif layer is not None:
        if layer not in adata.layers:
            raise KeyError(
                f"Layer {layer!r} not found in adata.layers; available layers: {list(adata.layers.keys())}."
            )
        chosen = Expression(
            adata.layers[layer], adata.var, f"adata.layers[{layer!r}]", f"layers[{layer!r}]", layer, False
        )
    else:
        chosen = Expression(adata.X, adata.var, "adata.X", "X", None, False)
    if chosen.matrix is None:
        raise ValueError(
            f"{chosen.where} is empty; pass `layer=` or `use_raw=True` to point at the expression matrix."
        )
    return chosen


def token_matrix(adata: AnnData, tokens_key: str = "langcell_tokens") -> Any:
    """The sparse token matrix ``adata.obsm[tokens_key]``, tokenized from the raw counts now if absent.

    Tokenizing writes ``adata.obsm[tokens_key]`` and ``adata.uns[tokens_key]`` exactly as
    :func:`scelmo.pp.tokenize` with its defaults (counts in ``adata.X``, var names as gene ids);
    call that first for other options. For a dask count matrix the tokens are a lazy dask array.

    Parameters
    ----------
    adata
        The cells.
    tokens_key
        Where the tokens are (or are written).

    Returns
    -------
    The ``n_cells x max_length`` token matrix: scipy sparse, or a dask array of sparse blocks.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo._anndata import token_matrix
    >>> from scelmo.cell_tokens import CellTokens
    >>> adata = ad.AnnData(np.ones((2, 3)))
    >>> adata.obsm["langcell_tokens"] = CellTokens(np.array([0, 2, 3]), np.array([5, 7, 9])).to_sparse()
    >>> token_matrix(adata).shape
    (2, 2048)
    """
    if tokens_key not in adata.obsm:
        logger.info("adata.obsm[%r] not found: tokenizing the cells from adata.X first", tokens_key)
        tokenize_into(adata, key_added=tokens_key)
    return adata.obsm[tokens_key]


def cell_tokens(adata: AnnData, tokens_key: str = "langcell_tokens") -> CellTokens:
    """The cells' rank-value tokens: ``adata.obsm[tokens_key]``, else tokenized from the raw counts now.

    See :func:`token_matrix` (the parameters are the same); a lazy (dask) token matrix is
    computed here.

    Returns
    -------
    The tokens, one sequence per cell in ``adata``'s order.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo._anndata import cell_tokens
    >>> from scelmo.cell_tokens import CellTokens
    >>> adata = ad.AnnData(np.ones((2, 3)))
    >>> adata.obsm["langcell_tokens"] = CellTokens(np.array([0, 2, 3]), np.array([5, 7, 9])).to_sparse()
    >>> cell_tokens(adata).lengths.tolist()
    [2, 1]
    """
    matrix = token_matrix(adata, tokens_key)
    if is_dask(matrix):
        matrix = matrix.compute()
    return CellTokens.from_sparse(matrix, name=f"adata.obsm[{tokens_key!r}]")


#: Below this share of matched genes, tokenizing warns that the gene names may be of the wrong kind.
_LOW_MATCH = 0.5


def tokenize_into(
    adata: AnnData,
    *,
    layer: str | None = None,
    use_raw: bool = False,
    gene_id_key: str | None = None,
    chunk_size: int = 512,
    max_length: int = MAX_LENGTH,
    dictionaries: Any = None,
    hgnc_fallback: bool = True,
    key_added: str = "langcell_tokens",
) -> CellTokens | None:
    """Tokenize the counts of ``adata`` and write ``obsm``/``uns[key_added]``: :func:`scelmo.pp.tokenize`'s work.

    The parameters and what is written are documented at :func:`scelmo.pp.tokenize`.

    Returns
    -------
    The tokens written; ``None`` when the matrix is a dask array (``obsm[key_added]`` is then a
    lazy dask array of sparse row blocks).
    """
    check_key(key_added)
    expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    if is_dask(expression.matrix):
        tokens = None
        match = match_genes(expression.gene_names(gene_id_key), dictionaries, hgnc_fallback=hgnc_fallback)
        adata.obsm[key_added] = lazy_rank_value_encode(
            expression.matrix, match, max_length=max_length, where=expression.where
        )
        n_empty = None  # known once computed
    else:
        tokens, match = rank_value_encode(
            expression.matrix,
            expression.gene_names(gene_id_key),
            dictionaries=dictionaries,
            chunk_size=chunk_size,
            max_length=max_length,
            where=expression.where,
            hgnc_fallback=hgnc_fallback,
        )
        adata.obsm[key_added] = tokens.to_sparse()
        n_empty = _warn_empty_cells(adata, tokens)
    logger.info("%s", match.summary())
    if match.n_kept < _LOW_MATCH * match.n_genes:
        warnings.warn(
            f"Only {match.summary()}. If the gene names are not Ensembl ids or HGNC symbols, pass "
            "`gene_id_key=` naming a var column that has them.",
            UserWarning,
            stacklevel=3,
        )
    params = {
        "layer": layer,
        "use_raw": use_raw,
        "gene_id_key": gene_id_key,
        "max_length": max_length,
        "encoding": "geneformer_v1_rank_value",
        "dictionaries": "custom" if dictionaries is not None else "geneformer_v1",
        "hgnc_fallback": hgnc_fallback,
    }
    TokensRecord(
        params=params,
        n_genes_matched=match.n_kept,
        n_genes_unmatched=len(match.unmatched),
        n_empty_cells=n_empty,
        hgnc={
            "status": match.hgnc,
            **{f"n_{how}": n for how, n in match.n_from_hgnc.items()},
            "examples": match.hgnc_examples(),
        },
    ).write(adata, key_added)
    return tokens


def _warn_empty_cells(adata: AnnData, tokens: CellTokens) -> int:
    empty = np.flatnonzero(tokens.lengths == 0)
    if empty.size:
        shown = ", ".join(repr(str(name)) for name in adata.obs_names[empty[:5]])
        warnings.warn(
            f"{empty.size} of {adata.n_obs} cells have no counts in any Geneformer V1 gene ({shown}"
            f"{', ...' if empty.size > 5 else ''}); their token sequences are empty and LangCell sees only <cls>.",
            UserWarning,
            stacklevel=4,
        )
    return int(empty.size)


def check_key(key: Any, what: str = "key_added") -> str:
    """Refuse a key that AnnData stores but cannot read back from ``.h5ad``/``.zarr``; return it.

    A key names a group or dataset in the file: it must be a non-empty string without ``/``
    (a path separator in HDF5 and zarr) or NUL characters, and not ``"."`` or ``".."``.
    Call it at the top of every function that writes under a user-given key, before any work.

    Parameters
    ----------
    key
        The key to check.
    what
        The argument's name, for the message (``"key_added"``, ``"--key-added"``...).

    Returns
    -------
    ``key``, unchanged.

    Examples
    --------
    >>> from scelmo._anndata import check_key
    >>> check_key("X_elmo")
    'X_elmo'
    >>> check_key("a/b")
    Traceback (most recent call last):
    ...
    ValueError: key_added='a/b' cannot be stored in an .h5ad or .zarr file: it contains '/'. Use letters, digits, '_', '-' or '.', e.g. key_added='a_b'.
    """
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a string, got {type(key).__name__} ({key!r}).")
    problem = None
    if not key.strip():
        problem = "it is empty" if not key else "it is only whitespace"
    elif "/" in key:
        problem = "it contains '/'"
    elif "\x00" in key:
        problem = "it contains a NUL character"
    elif key in (".", ".."):
        problem = f"{key!r} names a folder, not an entry"
    if problem is None:
        return key
    suggestion = key.replace("/", "_").replace("\x00", "").strip(". ")
    hint = f", e.g. {what}={suggestion!r}" if suggestion else ""
    raise ValueError(
        f"{what}={key!r} cannot be stored in an .h5ad or .zarr file: {problem}. "
        f"Use letters, digits, '_', '-' or '.'{hint}."
    )
