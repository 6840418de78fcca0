"""The block x gene-table products, the numba kernel above all, against float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from scelmo._products import BACKENDS, TableProduct, resolve_backend
from scelmo.cell_embedding import weighted_gene_average

pytest.importorskip("numba")

from scelmo._numba_kernel import GENE_BLOCK_SHIFT, TILE_WIDTH, csr_tiles_product, tile_table

RTOL = 1e-5


def random_csr(n_cells, n_genes, density, *, seed, index_dtype=np.int32, indptr_dtype=np.int64, empty=()):
    rng = np.random.default_rng(seed)
    X = sp.random(n_cells, n_genes, density=density, format="csr", dtype=np.float32, random_state=rng)
    X.data = rng.lognormal(size=X.nnz).astype(np.float32)
    for row in empty:
        X.data[X.indptr[row] : X.indptr[row + 1]] = 0
    X.eliminate_zeros()
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(indptr_dtype)
    return X


def reference(X, table):
    return np.asarray(X.astype(np.float64) @ table.astype(np.float64))


def assert_close(result, expected):
    assert result.dtype == np.float32
    scale = np.abs(expected).max(axis=1, keepdims=True)
    scale[scale == 0] = 1
    np.testing.assert_array_less(np.abs(result - expected) / scale, RTOL)


def numba_product(X, table):
    out = np.full((X.shape[0], table.shape[1]), np.nan, dtype=np.float32)
    TableProduct(table, "numba").into(X, out)
    return out


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("indptr_dtype", [np.int32, np.int64])
def test_numba_index_dtypes(index_dtype, indptr_dtype):
    X = random_csr(300, 1500, 0.05, seed=0, index_dtype=index_dtype, indptr_dtype=indptr_dtype, empty=(0, 7))
    table = np.random.default_rng(1).standard_normal((1500, 2 * TILE_WIDTH)).astype(np.float32)
    out = numba_product(X, table)
    assert_close(out, reference(X, table))
    assert not out[[0, 7]].any()


@pytest.mark.parametrize("dim", [1, 3, TILE_WIDTH - 1, TILE_WIDTH + 1, 3 * TILE_WIDTH + 17])
def test_numba_dims_not_multiple_of_tile(dim):
    # More genes than one gene block, so partial sums over blocks are exercised too.
    n_genes = 3 * (1 << GENE_BLOCK_SHIFT) + 5
    X = random_csr(70, n_genes, 0.03, seed=dim)
    table = np.random.default_rng(dim).standard_normal((n_genes, dim)).astype(np.float32)
    assert_close(numba_product(X, table), reference(X, table))


def test_numba_tiny_table_and_dense_rows():
    X = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 4.0, 5.0]], dtype=np.float32))
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    np.testing.assert_allclose(numba_product(X, table), reference(X, table), rtol=1e-6)


def test_numba_unsorted_and_duplicate_indices():
    indptr = np.array([0, 4, 4, 6], dtype=np.int64)
    indices = np.array([5, 1, 5, 0, 2, 2], dtype=np.int32)
    data = np.array([1.0, 2.0, 3.0, 4.0, 0.5, 0.25], dtype=np.float32)
    X = sp.csr_matrix((data, indices, indptr), shape=(3, 6))
    table = np.random.default_rng(2).standard_normal((6, 5)).astype(np.float32)
    dense = np.zeros((3, 6))
    np.add.at(dense, (np.repeat(np.arange(3), np.diff(indptr)), indices), data)
    out = numba_product(X, table)
    np.testing.assert_allclose(out, dense @ table.astype(np.float64), rtol=1e-6, atol=1e-6)


def test_numba_many_cells_across_chunks():
    # Enough cells for several chunks per thread, with a non-contiguous output view.
    X = random_csr(1100, 700, 0.02, seed=3, empty=(0, 513, 1099))
    table = np.random.default_rng(3).standard_normal((700, 40)).astype(np.float32)
    wide = np.full((X.shape[0], 50), np.nan, dtype=np.float32)
    TableProduct(table, "numba").into(X, wide[:, 5:45])
    assert_close(wide[:, 5:45], reference(X, table))
    assert np.isnan(wide[:, :5]).all()
    assert np.isnan(wide[:, 45:]).all()


def test_numba_empty_inputs():
    table = np.ones((4, 3), dtype=np.float32)
    out = np.empty((0, 3), dtype=np.float32)
    TableProduct(table, "numba").into(sp.csr_matrix((0, 4), dtype=np.float32), out)
    no_entries = sp.csr_matrix((2, 4), dtype=np.float32)
    out = np.full((2, 3), np.nan, dtype=np.float32)
    TableProduct(table, "numba").into(no_entries, out)
    assert (out == 0).all()


def test_numba_rejects_out_of_range_indices():
    indptr = np.array([0, 1, 2], dtype=np.int64)
    table = np.ones((4, 3), dtype=np.float32)
    for bad in (4, -1):
        indices = np.array([0, bad], dtype=np.int32)
        with pytest.raises(ValueError, match="column indices outside"):
            csr_tiles_product(
                indptr, indices, np.ones(2, np.float32), tile_table(table), np.empty((2, 3), np.float32)
            )


def test_tile_table_layout():
    table = np.arange(5 * (TILE_WIDTH + 3), dtype=np.float32).reshape(5, TILE_WIDTH + 3)
    tiles = tile_table(table)
    assert tiles.shape == (2, 5, TILE_WIDTH)
    assert tiles.ctypes.data % 64 == 0
    np.testing.assert_array_equal(tiles[0], table[:, :TILE_WIDTH])
    np.testing.assert_array_equal(tiles[1, :, :3], table[:, TILE_WIDTH:])
    assert not tiles[1, :, 3:].any()


def test_auto_prefers_numba():
    assert resolve_backend("auto") == "numba"
    assert "numba" in BACKENDS


@pytest.mark.parametrize(("mode", "renormalize"), [("wa", False), ("wa", True), ("aa", False)])
def test_weighted_gene_average_numba_matches_scipy(mode, renormalize):
    X = random_csr(400, 900, 0.04, seed=4)
    table = np.random.default_rng(4).standard_normal((900, 70)).astype(np.float32)
    matched = np.random.default_rng(5).random(900) < 0.8
    table[~matched] = 0
    results = {
        backend: weighted_gene_average(
            X,
            table,
            mode=mode,
            matched=matched,
            renormalize=renormalize,
            backend=backend,
            chunk_size=128,
            progress=False,
        )
        for backend in ("numba", "scipy")
    }
    emb, stats = results["numba"]
    assert stats.backend == "numba"
    expected = results["scipy"][0].astype(np.float64)
    np.testing.assert_allclose(emb, expected, rtol=0, atol=RTOL * np.abs(expected).max())


def test_weighted_gene_average_numba_csc():
    X = random_csr(200, 1200, 0.05, seed=6)
    table = np.random.default_rng(6).standard_normal((1200, 33)).astype(np.float32)
    emb, stats = weighted_gene_average(
        sp.csc_matrix(X), table, backend="numba", chunk_size=300, progress=False
    )
    weights = X.astype(np.float64).multiply(1 / X.sum(1)).tocsr()
    assert stats.backend == "numba"
    assert_close(emb, reference(weights, table))


def test_auto_falls_back_when_the_numba_kernel_cannot_run(monkeypatch):
    """A platform where the kernel fails to compile: "auto" warns and uses the next backend."""
    import scelmo._numba_kernel as kernel
    from scelmo._products import TableProduct

    def broken(*args, **kwargs):
        raise RuntimeError("LLVM ERROR: cannot select")

    monkeypatch.setattr(kernel, "csr_tiles_product", broken)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(30, 70)).astype(np.float32)
    block = sp.random(12, 30, density=0.3, format="csr", random_state=1, dtype=np.float32)
    product = TableProduct(table, backend="auto")
    assert product.backend == "numba"
    out = np.empty((12, 70), np.float32)
    product.into(block, out)
    assert product.backend != "numba"
    np.testing.assert_allclose(out, block.toarray().astype(np.float64) @ table, rtol=1e-5, atol=1e-5)
    explicit = TableProduct(table, backend="numba")
    with pytest.raises(RuntimeError, match="cannot select"):
        explicit.into(block, out)


@pytest.mark.parametrize("container", [sp.csr_matrix, sp.csr_array])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_csr_row_blocks_are_views_equal_to_slices(container, index_dtype):
    from scelmo._matrix import csr_row_view, iter_row_blocks

    X = container(
        random_csr(500, 90, 0.1, seed=7, index_dtype=index_dtype, indptr_dtype=index_dtype, empty=(3,))
    )
    for start, stop in [(0, 500), (100, 250), (3, 4), (499, 500), (7, 7)]:
        view = csr_row_view(X, start, stop)
        assert view.shape == (stop - start, 90)
        np.testing.assert_array_equal(view.toarray(), X[start:stop].toarray())
        assert view.indptr.dtype == X.indptr.dtype
    blocks = list(iter_row_blocks(X, 128))
    assert [(a, b) for a, b, _ in blocks] == [(0, 128), (128, 256), (256, 384), (384, 500)]
    # float32 CSR input: the blocks share the matrix's arrays instead of copying them
    assert all(np.shares_memory(block.data, X.data) for _, _, block in blocks)
    np.testing.assert_array_equal(sp.vstack([b for _, _, b in blocks]).toarray(), X.toarray())
