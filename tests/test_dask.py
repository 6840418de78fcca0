"""Dask-native tools: lazy graphs on dask matrices, equal to the in-memory results, on a cluster too.

The atlas path (lazy ``.h5ad``/``.zarr`` files and TileDB-SOMA experiments) is tested on
small files written here; the tools are the same as for any dask matrix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _synthetic import random_token_matrix
from anndata import AnnData

import scelmo as se
from scelmo.cell_embedding import weighted_gene_average

da = pytest.importorskip("dask.array")

N_CELLS, N_GENES, DIM = 1200, 300, 16


@pytest.fixture(scope="module")
def data():
    """Log-normalised-like CSR data, a table covering 80% of the genes, and gene names."""
    rng = np.random.default_rng(7)
    X = sp.random(N_CELLS, N_GENES, density=0.08, format="csr", random_state=rng, dtype=np.float32)
    X.data = np.log1p(np.ceil(X.data * 20)).astype(np.float32)
    X = X.tolil()
    X[5] = 0  # an empty cell
    X = sp.csr_matrix(X)
    X.eliminate_zeros()
    genes = [f"GENE{i}" for i in range(N_GENES)]
    table = se.GeneEmbeddings(genes[: int(0.8 * N_GENES)], rng.normal(size=(int(0.8 * N_GENES), DIM)))
    return X.tocsr(), genes, table


def _adata(X, genes):
    adata = AnnData(X)
    adata.var_names = genes
    adata.obs_names = [f"cell{i}" for i in range(X.shape[0])]
    return adata


@pytest.mark.parametrize(
    ("chunks", "options"),
    [
        ((250, N_GENES), {}),
        ((333, 100), {"renormalize": True}),  # several gene chunks: rechunked to one per row block
        ((1200, N_GENES), {"mode": "aa"}),
    ],
)
def test_elmo_embed_on_dask_is_lazy_and_equals_in_memory(data, chunks, options):
    X, genes, table = data
    eager = _adata(X, genes)
    with pytest.warns(UserWarning, match="1 of 1200 cells"):
        se.tl.elmo_embed(eager, table, progress=False, **options)
    lazy = _adata(da.from_array(X, chunks=chunks), genes)
    se.tl.elmo_embed(lazy, table, progress=False, **options)
    result = lazy.obsm["X_elmo"]
    assert isinstance(result, da.Array)
    assert result.chunks[0] == lazy.X.chunks[0]
    computed = result.compute()
    np.testing.assert_allclose(computed, eager.obsm["X_elmo"], rtol=1e-6, atol=1e-7)
    assert lazy.uns["X_elmo"]["coverage"] == eager.uns["X_elmo"]["coverage"]
    assert "n_empty_cells" not in lazy.uns["X_elmo"]  # unknown until computed
    # the paper's formula, on one cell, independently
    cell = 17
    weights = X[cell].toarray().ravel().astype(np.float64)
    aligned = table.align(genes, min_coverage=0).matrix.astype(np.float64)
    if options.get("mode") == "aa":
        expected = weights @ aligned / N_GENES
    elif options.get("renormalize"):
        expected = weights @ aligned / weights[: len(table.genes)].sum()
    else:
        expected = weights @ aligned / weights.sum()
    np.testing.assert_allclose(computed[cell], expected, rtol=1e-5)


def test_a_bad_block_fails_when_computed_with_the_cell_named(data):
    X, genes, table = data
    dense = X.toarray()
    dense[900, 3] = -1.0
    lazy = _adata(da.from_array(dense, chunks=(300, N_GENES)), genes)
    se.tl.elmo_embed(lazy, table, progress=False)  # lazy: nothing read yet
    with pytest.raises(ValueError, match="negative values: cell 900 has the value -1"):
        lazy.obsm["X_elmo"].compute()


def test_the_table_enters_the_graph_once(data):
    from scelmo._products import TableProduct

    X, genes, table = data
    lazy = _adata(da.from_array(X, chunks=(100, N_GENES)), genes)
    se.tl.elmo_embed(lazy, table, progress=False)
    graph = dict(lazy.obsm["X_elmo"].__dask_graph__())
    aligned = table.align(genes, min_coverage=0).matrix
    values = [getattr(value, "value", value) for value in graph.values()]
    # The table travels once, inside its product (with the kernel's tiles built once), never alone.
    products = [value for value in values if isinstance(value, TableProduct)]
    assert len(products) == 1
    np.testing.assert_array_equal(products[0].table, aligned)
    assert not [v for v in values if isinstance(v, np.ndarray) and v.shape == aligned.shape]
    assert len(lazy.X.chunks[0]) == 12


def test_distributed_cluster_gives_the_same_embeddings(data, tmp_path):
    distributed = pytest.importorskip("distributed")
    X, genes, table = data
    with pytest.warns(UserWarning, match="1 of 1200 cells"):
        eager, _ = weighted_gene_average(X, table.align(genes, min_coverage=0).matrix, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        lazy = _adata(da.from_array(X, chunks=(200, N_GENES)), genes)
        se.tl.elmo_embed(lazy, table, progress=False)
        lazy.obsm["X_elmo"].to_zarr(str(tmp_path / "X_elmo.zarr"))
    import zarr

    written = zarr.open_array(str(tmp_path / "X_elmo.zarr"), mode="r")[:]
    np.testing.assert_allclose(written, eager, rtol=1e-6, atol=1e-7)


@pytest.mark.filterwarnings("ignore:Writing zarr v2 data:UserWarning")
@pytest.mark.parametrize("suffix", [".h5ad", ".zarr"])
def test_read_lazy_then_embed_and_write_zarr(data, tmp_path, suffix):
    X, genes, table = data
    eager = _adata(X, genes)
    path = tmp_path / f"cells{suffix}"
    eager.write_h5ad(path) if suffix == ".h5ad" else eager.write_zarr(path)
    lazy = se.datasets.read_lazy(path, chunk_size=250)
    assert isinstance(lazy.X, da.Array)
    assert lazy.X.chunks[0] == (250, 250, 250, 250, 200)
    assert list(lazy.var_names) == genes
    se.tl.elmo_embed(lazy, table, progress=False)
    with pytest.warns(UserWarning, match="1 of 1200 cells"):
        se.tl.elmo_embed(eager, table, progress=False)
    out = tmp_path / "embedded.zarr"
    lazy.write_zarr(out)  # anndata stores the dask arrays block by block
    import anndata as ad

    back = ad.read_zarr(out)
    np.testing.assert_allclose(back.obsm["X_elmo"], eager.obsm["X_elmo"], rtol=1e-6, atol=1e-7)


def test_read_lazy_refuses_a_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        se.datasets.read_lazy(tmp_path / "missing.h5ad")


def test_soma_experiment_to_elmo_embeddings(data, tmp_path):
    tiledbsoma_io = pytest.importorskip("tiledbsoma.io")
    X, genes, table = data
    cell_types = np.where(np.arange(N_CELLS) % 3 == 0, "B cell", "T cell")
    source = AnnData(
        sp.csr_matrix(X),
        obs=pd.DataFrame({"cell_type": cell_types}, index=[f"cell{i}" for i in range(N_CELLS)]),
        var=pd.DataFrame({"feature_name": genes}, index=[f"ENSG{i:011d}" for i in range(N_GENES)]),
    )
    uri = str(tmp_path / "experiment")
    tiledbsoma_io.from_anndata(uri, source, measurement_name="RNA", X_layer_name="raw")

    lazy = se.datasets.read_soma(uri, chunk_size=400, obs_columns=["cell_type"])
    assert lazy.X.chunks[0] == (400, 400, 400)
    assert list(lazy.var_names) == genes
    np.testing.assert_array_equal(lazy.X.compute().toarray(), X.toarray())
    se.tl.elmo_embed(lazy, table, progress=False)
    eager = _adata(X, genes)
    with pytest.warns(UserWarning, match="1 of 1200 cells"):
        se.tl.elmo_embed(eager, table, progress=False)
    np.testing.assert_allclose(lazy.obsm["X_elmo"].compute(), eager.obsm["X_elmo"], rtol=1e-6, atol=1e-7)

    b_cells = se.datasets.read_soma(uri, obs_value_filter="cell_type == 'B cell'", chunk_size=100)
    assert b_cells.n_obs == int((cell_types == "B cell").sum())
    np.testing.assert_array_equal(b_cells.X.compute().toarray(), X[cell_types == "B cell"].toarray())

    with pytest.raises(KeyError, match="no X layer 'counts'"):
        se.datasets.read_soma(uri, X_name="counts")


def test_tokenize_on_dask_is_lazy_and_gives_identical_tokens(data):
    X, _, _ = data
    counts = X.copy()
    counts.data = np.expm1(counts.data).round()
    ids = [f"ENSG{i:011d}" for i in range(N_GENES)]
    rng = np.random.default_rng(3)
    vocab = {
        "token_ids": {gene: i + 2 for i, gene in enumerate(ids[:250])},
        "gene_medians": {gene: float(m) for gene, m in zip(ids[:250], rng.uniform(0.5, 3, 250), strict=True)},
    }
    eager = AnnData(counts)
    eager.var_names = ids
    with pytest.warns(UserWarning, match="1 of 1200 cells have no counts"):
        se.pp.tokenize(eager, dictionaries=vocab, max_length=64)
    lazy = AnnData(da.from_array(counts, chunks=(250, 100)))
    lazy.var_names = ids
    se.pp.tokenize(lazy, dictionaries=vocab, max_length=64)
    tokens = lazy.obsm["langcell_tokens"]
    assert isinstance(tokens, da.Array)
    computed = tokens.compute()
    assert (computed != eager.obsm["langcell_tokens"]).nnz == 0
    assert computed.dtype == eager.obsm["langcell_tokens"].dtype
    assert lazy.uns["langcell_tokens"]["n_genes_matched"] == 250
    assert "n_empty_cells" not in lazy.uns["langcell_tokens"]


def test_tokenize_on_dask_names_the_bad_block(data):
    X, _, _ = data
    ids = [f"ENSG{i:011d}" for i in range(N_GENES)]
    vocab = {
        "token_ids": {gene: i + 2 for i, gene in enumerate(ids)},
        "gene_medians": dict.fromkeys(ids, 1.0),
    }
    lazy = AnnData(da.from_array(X, chunks=(400, N_GENES)))  # log values, not counts
    lazy.var_names = ids
    se.pp.tokenize(lazy, dictionaries=vocab)
    with pytest.raises(ValueError, match=r"the block of cells 400-799\) does not hold raw counts"):
        lazy.obsm["langcell_tokens"][400:800].compute()


def _tiny_langcell(tmp_path):
    pytest.importorskip("torch")
    from _langcell_fixtures import write_checkpoint

    from scelmo.models import LangCell

    return LangCell.from_pretrained(write_checkpoint(tmp_path / "ckpt", seed=1).path)


def test_langcell_encode_on_dask_tokens_is_lazy_and_equals_in_memory(tmp_path):
    model = _tiny_langcell(tmp_path)
    tokens = random_token_matrix(90)
    eager = AnnData(np.zeros((90, 1), dtype=np.float32))
    eager.obsm["langcell_tokens"] = tokens
    se.tl.langcell_encode(eager, model, progress=False, store_cls=True)
    lazy = AnnData(np.zeros((90, 1), dtype=np.float32))
    lazy.obsm["langcell_tokens"] = da.from_array(tokens, chunks=(25, 2048))
    se.tl.langcell_encode(lazy, model, progress=False, store_cls=True)
    assert isinstance(lazy.obsm["X_langcell"], da.Array)
    assert lazy.obsm["X_langcell"].chunks[0] == (25, 25, 25, 15)
    np.testing.assert_allclose(lazy.obsm["X_langcell"].compute(), eager.obsm["X_langcell"], atol=1e-5)
    np.testing.assert_allclose(lazy.obsm["X_langcell_cls"].compute(), eager.obsm["X_langcell_cls"], atol=1e-5)
    graph = dict(lazy.obsm["X_langcell"].__dask_graph__())
    holding_model = [key for key, value in graph.items() if type(value).__name__ == "LangCell"]
    holding_model += [k for k, v in graph.items() if type(getattr(v, "value", None)).__name__ == "LangCell"]
    assert len(holding_model) == 1


def test_tokenize_and_langcell_encode_through_a_cluster(tmp_path, data):
    distributed = pytest.importorskip("distributed")
    model = _tiny_langcell(tmp_path)
    X, _, _ = data
    counts = X.copy()
    counts.data = np.expm1(counts.data).round()
    ids = [f"ENSG{i:011d}" for i in range(N_GENES)]
    vocab = {
        "token_ids": {gene: i + 2 for i, gene in enumerate(ids)},
        "gene_medians": dict.fromkeys(ids, 1.0),
    }
    eager = AnnData(counts)
    eager.var_names = ids
    with pytest.warns(UserWarning, match="1 of 1200 cells have no counts"):
        se.pp.tokenize(eager, dictionaries=vocab)
    se.tl.langcell_encode(eager, model, progress=False)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, memory_limit="1GiB", dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        lazy = AnnData(da.from_array(counts, chunks=(300, N_GENES)))
        lazy.var_names = ids
        se.pp.tokenize(lazy, dictionaries=vocab)
        se.tl.langcell_encode(lazy, model, progress=False)
        computed = lazy.obsm["X_langcell"].compute()
    np.testing.assert_allclose(computed, eager.obsm["X_langcell"], atol=1e-5)


def test_soma_experiment_to_langcell_embeddings(data, tmp_path):
    tiledbsoma_io = pytest.importorskip("tiledbsoma.io")
    model = _tiny_langcell(tmp_path)
    X, _, _ = data
    counts = X[:300].copy()
    counts.data = np.expm1(counts.data).round()
    ids = [f"ENSG{i:011d}" for i in range(N_GENES)]
    source = AnnData(sp.csr_matrix(counts), var=pd.DataFrame(index=ids))
    source.obs_names = [f"cell{i}" for i in range(300)]
    uri = str(tmp_path / "experiment")
    tiledbsoma_io.from_anndata(uri, source, measurement_name="RNA", X_layer_name="raw")
    vocab = {
        "token_ids": {gene: i + 2 for i, gene in enumerate(ids)},
        "gene_medians": dict.fromkeys(ids, 1.0),
    }

    lazy = se.datasets.read_soma(uri, gene_column=None, chunk_size=128)
    lazy.var_names = ids  # the experiment's var ids, as the source had them
    se.pp.tokenize(lazy, dictionaries=vocab)
    se.tl.langcell_encode(lazy, model, progress=False)
    assert isinstance(lazy.obsm["X_langcell"], da.Array)
    with pytest.warns(UserWarning, match="have no counts"):
        se.pp.tokenize(source, dictionaries=vocab)
    se.tl.langcell_encode(source, model, progress=False)
    np.testing.assert_allclose(lazy.obsm["X_langcell"].compute(), source.obsm["X_langcell"], atol=1e-5)
