"""``tl.elmo_embed`` equals the published dense float64 formulas on every input kind."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

import scelmo as se
from scelmo.cell_embedding import weighted_gene_average

RTOL = 1e-5


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="module")
def table(pbmc) -> se.GeneEmbeddings:
    """A random 48-d table covering 80% of the genes plus genes the data lacks."""
    rng = np.random.default_rng(0)
    genes = list(pbmc.raw.var_names)
    kept = [g for g in genes if rng.random() < 0.8] + ["NOT_A_GENE_1", "NOT_A_GENE_2"]
    return se.GeneEmbeddings(kept, rng.standard_normal((len(kept), 48)), provenance={"text_source": "random"})


def seed_reference(X: np.ndarray, var_names, table: se.GeneEmbeddings, mode: str, renormalize=False):
    """The seeds' computation: dense float64, zero rows for unmatched genes, exact symbols."""
    X = np.asarray(X, dtype=np.float64)
    E = np.zeros((len(var_names), table.dim))
    matched = np.zeros(len(var_names), dtype=bool)
    for i, gene in enumerate(var_names):
        if gene in table:
            E[i] = table[gene]
            matched[i] = True
    if mode == "aa":
        return X @ E / X.shape[1]
    totals = (X * matched).sum(1, keepdims=True) if renormalize else X.sum(1, keepdims=True)
    return (X / totals) @ E


def max_relative_error(result: np.ndarray, reference: np.ndarray) -> float:
    norms = np.linalg.norm(reference, axis=1)
    return float((np.linalg.norm(result - reference, axis=1) / norms).max())


def _as_kind(X: sp.csr_matrix, kind: str, tmp_path):
    if kind == "dense":
        return X.toarray()
    if kind == "csr":
        return sp.csr_matrix(X)
    if kind == "csc":
        return sp.csc_matrix(X)
    if kind == "csr_array":
        return sp.csr_array(X)
    if kind == "dask_dense":
        da = pytest.importorskip("dask.array")
        return da.from_array(X.toarray(), chunks=(128, -1))
    if kind == "dask_sparse":
        da = pytest.importorskip("dask.array")
        return da.from_array(sp.csr_matrix(X), chunks=(100, 400), asarray=False)
    raise AssertionError(kind)


KINDS = ["dense", "csr", "csc", "csr_array", "dask_dense", "dask_sparse"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["wa", "aa"])
def test_matches_seed_formula_on_every_kind(pbmc, table, kind, mode, tmp_path):
    X = pbmc.raw.X
    adata = ad.AnnData(_as_kind(X, kind, tmp_path), var=pbmc.raw.var.copy(), obs=pbmc.obs.copy())
    se.tl.elmo_embed(adata, table, mode=mode, chunk_size=97, progress=False)
    reference = seed_reference(X.toarray(), pbmc.raw.var_names, table, mode)
    result = adata.obsm["X_elmo"]
    assert result.dtype == np.float32
    assert result.shape == (pbmc.n_obs, table.dim)
    assert max_relative_error(result, reference) < RTOL


@pytest.mark.parametrize("storage", ["csr", "csc", "dense"])
def test_backed_h5ad(pbmc, table, storage, tmp_path):
    X = pbmc.raw.X
    matrix = {"csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X), "dense": X.toarray()}[storage]
    path = tmp_path / "pbmc.h5ad"
    ad.AnnData(matrix, var=pbmc.raw.var.copy(), obs=pbmc.obs.copy()).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    se.tl.elmo_embed(backed, table, chunk_size=128, progress=False)
    reference = seed_reference(X.toarray(), pbmc.raw.var_names, table, "wa")
    assert max_relative_error(backed.obsm["X_elmo"], reference) < RTOL
    backed.file.close()


@pytest.mark.parametrize("backend", ["numba", "torch", "numpy", "scipy", "auto"])
def test_every_backend_agrees(pbmc, table, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    emb, stats = weighted_gene_average(
        pbmc.raw.X, table.align(pbmc.raw.var_names).matrix, backend=backend, chunk_size=256, progress=False
    )
    reference = seed_reference(pbmc.raw.X.toarray(), pbmc.raw.var_names, table, "wa")
    assert max_relative_error(emb, reference) < RTOL
    assert stats.backend in ("numba", "torch", "numpy", "scipy", "auto")


def test_use_raw_default_layer_and_uns(pbmc, table):
    adata = pbmc.copy()
    adata.layers["lognorm"] = adata.raw.X[:, : adata.n_vars].copy()  # same genes as X
    se.tl.elmo_embed(adata, table, progress=False)  # raw is used by default
    assert adata.uns["X_elmo"]["params"]["matrix"] == "raw"
    coverage = adata.uns["X_elmo"]["coverage"]
    expected_matched = sum(g in table for g in pbmc.raw.var_names)
    assert coverage["n_matched"] == expected_matched
    assert coverage["n_vars"] == pbmc.raw.n_vars
    assert adata.uns["X_elmo"]["gene_table"]["content_hash"] == table.content_hash
    assert adata.uns["X_elmo"]["gene_table"]["text_source"] == "random"

    out = se.tl.elmo_embed(adata, table, layer="lognorm", key_added="X_layer", copy=True, progress=False)
    assert "X_layer" not in adata.obsm
    assert out.uns["X_layer"]["params"]["matrix"] == "layers['lognorm']"
    raw_var = pbmc.raw.var_names
    lognorm_ref = seed_reference(
        pbmc.raw.X[:, : adata.n_vars].toarray(), raw_var[: adata.n_vars], table, "wa"
    )
    assert max_relative_error(out.obsm["X_layer"], lognorm_ref) < RTOL


def test_results_survive_h5ad_round_trip(pbmc, table, tmp_path):
    adata = pbmc.copy()
    se.tl.elmo_embed(adata, table, progress=False)
    adata.write_h5ad(tmp_path / "out.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(back.obsm["X_elmo"], adata.obsm["X_elmo"])
    assert back.uns["X_elmo"]["params"]["mode"] == "wa"


def test_renormalize_over_matched_genes(pbmc, table):
    adata = pbmc.copy()
    se.tl.elmo_embed(adata, table, renormalize=True, progress=False)
    reference = seed_reference(pbmc.raw.X.toarray(), pbmc.raw.var_names, table, "wa", renormalize=True)
    assert max_relative_error(adata.obsm["X_elmo"], reference) < RTOL
    # Renormalised weights sum to one over matched genes: an all-ones table gives all-ones cells.
    ones = se.GeneEmbeddings(table.genes, np.ones((len(table), 3)))
    se.tl.elmo_embed(adata, ones, renormalize=True, key_added="X_ones", progress=False)
    np.testing.assert_allclose(adata.obsm["X_ones"], 1.0, rtol=RTOL)


def test_empty_cells_get_zero_vector_and_warning(table, pbmc):
    X = pbmc.raw.X[:10].toarray()
    X[[2, 7]] = 0
    adata = ad.AnnData(sp.csr_matrix(X), var=pbmc.raw.var.copy())
    with pytest.warns(UserWarning, match="2 of 10 cells"):
        se.tl.elmo_embed(adata, table, progress=False)
    emb = adata.obsm["X_elmo"]
    assert np.isfinite(emb).all()
    assert not emb[[2, 7]].any()
    assert adata.uns["X_elmo"]["n_empty_cells"] == 2


def test_bad_input_errors(pbmc, table):
    scaled = ad.AnnData(pbmc.X.copy(), var=pbmc.var.copy())  # pbmc68k_reduced.X is z-scored
    with pytest.raises(ValueError, match="negative values"):
        se.tl.elmo_embed(scaled, table, progress=False)
    # The arithmetic average has no weights, so scaled data is allowed there.
    se.tl.elmo_embed(scaled, table, mode="aa", progress=False)

    with_nan = pbmc.raw.X[:20].toarray()
    with_nan[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        se.tl.elmo_embed(ad.AnnData(with_nan, var=pbmc.raw.var.copy()), table, progress=False)

    with pytest.raises(ValueError, match="No gene of the data matches"):
        se.tl.elmo_embed(
            ad.AnnData(np.ones((3, 2)), var=pd.DataFrame(index=["a", "b"])), table, progress=False
        )
    with pytest.raises(TypeError, match="GeneEmbeddings"):
        se.tl.elmo_embed(pbmc.copy(), {"CD3E": np.ones(3)}, progress=False)
    with pytest.raises(KeyError, match="Layer"):
        se.tl.elmo_embed(pbmc.copy(), table, layer="counts", progress=False)


def test_low_coverage_warns(pbmc):
    genes = list(pbmc.raw.var_names[:50])
    small = se.GeneEmbeddings(genes, np.ones((50, 4)))
    adata = pbmc.copy()
    with pytest.warns(UserWarning, match="Only 50 of 765 genes"):
        se.tl.elmo_embed(adata, small, progress=False)


@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
@pytest.mark.parametrize("mode", ["wa", "aa"])
def test_overflow_near_the_float32_maximum_is_an_error_naming_the_cells(pbmc, table, kind, mode):
    X = np.asarray(pbmc.raw.X[:8].toarray(), dtype=np.float32)
    X[2, :50] = np.finfo(np.float32).max / 4  # finite, but no average of them fits in float32 arithmetic
    X[5, [i for i, gene in enumerate(pbmc.raw.var_names) if gene in table][:3]] = 3e38
    matrix = {"dense": X, "csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X)}[kind]
    adata = ad.AnnData(matrix, var=pd.DataFrame(index=pbmc.raw.var_names))
    adata.obs_names = [f"cell{i}" for i in range(8)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no numpy overflow warning instead of the error
        with pytest.raises(ValueError, match="overflow float32") as err:
            se.tl.elmo_embed(adata, table, mode=mode, progress=False)
    message = str(err.value)
    assert "2 of 8 cells ('cell2', 'cell5') overflow float32" in message
    assert "not log-normalised expression" in message
    assert "X_elmo" not in adata.obsm
    assert "X_elmo" not in adata.uns
    # Large but representable inputs (raw counts of a deep cell) still embed exactly.
    fine = ad.AnnData(X[[0, 1]] * 1e6, var=pd.DataFrame(index=pbmc.raw.var_names))
    se.tl.elmo_embed(fine, table, mode=mode, progress=False)
    expected = seed_reference(X[[0, 1]] * 1e6, pbmc.raw.var_names, table, mode)
    assert max_relative_error(fine.obsm["X_elmo"], expected) < RTOL


@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
def test_row_sums_beyond_float32_are_added_in_float64(kind):
    # Each value and the average fit float32; the row's total (4e38) does not. Before, sparse rows
    # summed in float32 to inf and silently gave a zero embedding.
    X = np.array([[2e38, 2e38, 0.0, 0.0], [1.0, 2.0, 0.0, 1.0]], dtype=np.float32)
    table = se.GeneEmbeddings(
        ["A", "B", "C", "D"], np.array([[0.01, 0.02], [0.03, 0.0], [1.0, 1.0], [0.5, 0.5]])
    )
    matrix = {"dense": X, "csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X)}[kind]
    adata = ad.AnnData(matrix, var=pd.DataFrame(index=["A", "B", "C", "D"]))
    se.tl.elmo_embed(adata, table, progress=False)
    expected = seed_reference(X, adata.var_names, table, "wa")
    np.testing.assert_allclose(adata.obsm["X_elmo"], expected, rtol=1e-6)
    np.testing.assert_allclose(adata.obsm["X_elmo"][0], [0.02, 0.01], rtol=1e-6)
