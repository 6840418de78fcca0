"""Data too large for memory, as an AnnData whose matrix is a dask array read block by block.

Two sources: an ``.h5ad`` or ``.zarr`` file (anndata's lazy element reader) and a TileDB-SOMA
experiment, the format of the CELLxGENE Census. In both, ``obs`` and ``var`` are read into
memory (a few columns per cell) and ``X`` stays on disk: each dask task reads its block of
cells when it runs, on whichever worker runs it, so the tools of :mod:`scelmo.tl` and
:mod:`scelmo.pp` build lazy graphs on it and a ``dask.distributed`` cluster shares the work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from scelmo._optional import import_optional

__all__ = ["read_lazy", "read_soma"]

#: Cells per block: ~1,500 non-zeros a cell make a 10k-cell CSR block ~0.2 GB.
DEFAULT_CHUNK_SIZE = 10_000


def read_lazy(path: str | os.PathLike[str], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AnnData:
    """An ``.h5ad`` or ``.zarr`` file as an AnnData whose ``X`` is a dask array of row blocks.

    ``obs``, ``var`` and ``uns`` are read into memory; ``X`` (dense or CSR) is read block by
    block when a computation needs it, through :func:`anndata.experimental.read_elem_lazy`.

    Parameters
    ----------
    path
        An ``.h5ad`` file or a ``.zarr`` store written by anndata.
    chunk_size
        Cells per block.

    Returns
    -------
    The AnnData; ``X`` is a :class:`dask.array.Array` with ``chunk_size`` cells per block.

    Examples
    --------
    >>> import scelmo as se
    >>> adata = se.datasets.read_lazy("atlas.zarr", chunk_size=20_000)  # doctest: +SKIP
    >>> se.tl.elmo_embed(adata, table)  # doctest: +SKIP
    >>> adata.obsm["X_elmo"].to_zarr("atlas_elmo.zarr")  # doctest: +SKIP
    """
    import anndata as ad

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} does not exist; give the path of an .h5ad file or a .zarr store.")
    if os.path.isdir(path):
        import zarr

        store = zarr.open_group(path, mode="r")
    else:
        import h5py

        store = h5py.File(path, "r")
    read = ad.io.read_elem
    n_vars = len(read(store["var"]))
    X = ad.experimental.read_elem_lazy(store["X"], chunks=(chunk_size, n_vars))
    return AnnData(
        X=X,
        obs=read(store["obs"]),
        var=read(store["var"]),
        uns=read(store["uns"]) if "uns" in store else {},
    )


def read_soma(
    uri: str,
    *,
    measurement: str = "RNA",
    X_name: str = "raw",
    obs_value_filter: str | None = None,
    var_value_filter: str | None = None,
    obs_columns: Sequence[str] | None = None,
    gene_column: str | None = "feature_name",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    context: Any = None,
) -> AnnData:
    """A TileDB-SOMA experiment (CELLxGENE Census) as an AnnData with a dask ``X``.

    The cells and genes the filters select are resolved now (their ``obs``/``var`` rows are
    read); each dask task reads its block of cells from the experiment's ``X[X_name]`` when it
    runs, so a cluster streams the matrix without any process holding all of it.

    Parameters
    ----------
    uri
        The experiment's URI (a local folder, ``s3://...``, ``tiledb://...``).
    measurement
        The measurement holding ``X`` and ``var`` (``"RNA"`` in the Census).
    X_name
        The layer of ``X`` to read (``"raw"``: counts in the Census).
    obs_value_filter, var_value_filter
        SOMA value filters selecting cells and genes, e.g.
        ``"tissue_general == 'blood' and is_primary_data == True"``.
    obs_columns
        ``obs`` columns to read (default all; the Census has many: name the ones you need).
    gene_column
        ``var`` column whose values become the var names (``"feature_name"``: gene symbols in
        the Census; the Ensembl ids stay in ``var['feature_id']``). ``None`` keeps the SOMA
        join ids.
    chunk_size
        Cells per block.
    context
        A :class:`tiledbsoma.SOMATileDBContext` (credentials, region), passed to each read; the
        Census sets one up in ``cellxgene_census.open_soma``.

    Returns
    -------
    The AnnData: ``X`` is a dask array of float32 CSR blocks, ``obs``/``var`` indexed by the
    SOMA join ids (as strings) unless ``gene_column`` names the genes.

    Examples
    --------
    >>> import scelmo as se
    >>> census = "s3://cellxgene-census-public-us-west-2/cell-census/2025-01-30/soma/census_data/homo_sapiens"
    >>> blood = se.datasets.read_soma(census, obs_value_filter="tissue_general == 'blood'",
    ...                               obs_columns=["cell_type", "donor_id"])  # doctest: +SKIP
    >>> se.tl.elmo_embed(blood, table)  # doctest: +SKIP
    """
    tiledbsoma = import_optional("tiledbsoma", purpose="Reading TileDB-SOMA experiments")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}.")
    with tiledbsoma.Experiment.open(uri, context=context) as experiment:
        if measurement not in experiment.ms:
            raise KeyError(f"{uri} has no measurement {measurement!r}; it has {list(experiment.ms.keys())}.")
        if X_name not in experiment.ms[measurement].X:
            raise KeyError(
                f"Measurement {measurement!r} has no X layer {X_name!r}; it has "
                f"{list(experiment.ms[measurement].X.keys())}. Pass X_name=."
            )
        query = experiment.axis_query(
            measurement,
            obs_query=tiledbsoma.AxisQuery(value_filter=obs_value_filter),
            var_query=tiledbsoma.AxisQuery(value_filter=var_value_filter),
        )
        obs = _frame(query.obs(column_names=_with_joinid(obs_columns)))
        var = _frame(query.var())
    if gene_column is not None:
        if gene_column not in var.columns:
            raise KeyError(
                f"var has no column {gene_column!r}; it has {list(var.columns)}. Pass gene_column=."
            )
        var.index = pd.Index(var[gene_column].astype(str).to_numpy(), name=None)
    else:
        var.index = var["soma_joinid"].astype(str).to_numpy()
    X = _soma_dask_matrix(
        uri,
        measurement,
        X_name,
        obs["soma_joinid"].to_numpy(np.int64),
        var["soma_joinid"].to_numpy(np.int64),
        chunk_size,
        context,
    )
    obs.index = obs["soma_joinid"].astype(str).to_numpy()
    return AnnData(X=X, obs=obs, var=var)


def _with_joinid(columns: Sequence[str] | None) -> list[str] | None:
    if columns is None:
        return None
    return ["soma_joinid", *[c for c in columns if c != "soma_joinid"]]


def _frame(tables: Any) -> pd.DataFrame:
    frame = tables.concat().to_pandas()
    return frame.sort_values("soma_joinid", kind="stable").reset_index(drop=True)


def _soma_dask_matrix(
    uri: str,
    measurement: str,
    X_name: str,
    obs_ids: np.ndarray,
    var_ids: np.ndarray,
    chunk_size: int,
    context: Any,
) -> Any:
    import dask
    import dask.array as da

    n_vars = len(var_ids)
    shared_var_ids = dask.delayed(var_ids, pure=True)
    pieces = []
    for start in range(0, len(obs_ids), chunk_size):
        block_ids = obs_ids[start : start + chunk_size]
        task = dask.delayed(read_soma_block, pure=True)(
            uri, measurement, X_name, block_ids, shared_var_ids, context
        )
        pieces.append(
            da.from_delayed(
                task,
                shape=(len(block_ids), n_vars),
                dtype=np.float32,
                meta=sp.csr_matrix((0, 0), dtype=np.float32),
            )
        )
    if not pieces:
        return da.from_array(sp.csr_matrix((0, n_vars), dtype=np.float32), chunks=(1, n_vars))
    return da.concatenate(pieces, axis=0)


def read_soma_block(
    uri: str,
    measurement: str,
    X_name: str,
    obs_ids: np.ndarray,
    var_ids: np.ndarray,
    context: Any = None,
) -> sp.csr_matrix:
    """Cells ``obs_ids`` x genes ``var_ids`` of a SOMA experiment's ``X[X_name]``, as float32 CSR.

    Rows and columns follow the order of ``obs_ids`` and ``var_ids`` (both sorted join ids);
    what a dask task of :func:`read_soma` runs.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.datasets import read_soma_block
    >>> block = read_soma_block("experiment", "RNA", "raw", np.arange(10), np.arange(2000))  # doctest: +SKIP
    """
    tiledbsoma = import_optional("tiledbsoma", purpose="Reading TileDB-SOMA experiments")
    with tiledbsoma.Experiment.open(uri, context=context) as experiment:
        array = experiment.ms[measurement].X[X_name]
        table = array.read(coords=(obs_ids, var_ids)).tables().concat()
    rows = np.searchsorted(obs_ids, table.column("soma_dim_0").to_numpy())
    cols = np.searchsorted(var_ids, table.column("soma_dim_1").to_numpy())
    values = table.column("soma_data").to_numpy().astype(np.float32, copy=False)
    matrix = sp.csr_matrix((values, (rows, cols)), shape=(len(obs_ids), len(var_ids)), dtype=np.float32)
    matrix.sum_duplicates()
    return matrix
