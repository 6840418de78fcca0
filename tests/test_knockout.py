"""In-silico knockout: exact vectorised re-embedding, the matched null, and a planted driver gene."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData

import scelmo as se
from scelmo.knockout import (
    benjamini_hochberg,
    embed_cells,
    empirical_p_values,
    expression_bins,
    gene_set_mean,
    knockout_screen,
    single_gene_mean_shifts,
)

N_GENES, DIM, DRIVER = 300, 16, "G17"


def disease_data(
    seed: int = 0, n_cells: int = 150, driver_rate: float = 3.0
) -> tuple[AnnData, se.GeneEmbeddings]:
    """Control and disease cells that differ only by one gene, switched on in disease."""
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(N_GENES)]
    rates = rng.uniform(0.2, 3.0, size=N_GENES)
    rates[genes.index(DRIVER)] = 0.05
    disease_rates = rates.copy()
    disease_rates[genes.index(DRIVER)] = driver_rate
    counts = np.vstack(
        [rng.poisson(rates, (n_cells, N_GENES)), rng.poisson(disease_rates, (n_cells, N_GENES))]
    )
    obs = pd.DataFrame(
        {"condition": ["healthy"] * n_cells + ["disease"] * n_cells},
        index=[f"c{i}" for i in range(2 * n_cells)],
    )
    adata = AnnData(sp.csr_matrix(np.log1p(counts).astype(np.float32)), obs=obs)
    adata.var_names = genes
    table = se.GeneEmbeddings(genes, rng.normal(size=(N_GENES, DIM)))
    return adata, table


def _naive_means(x: np.ndarray, table: np.ndarray, mode: str) -> np.ndarray:
    out = []
    for g in range(x.shape[1]):
        knocked = x.copy()
        knocked[:, g] = 0
        out.append(embed_cells(knocked, table, mode).mean(axis=0))
    return np.asarray(out)


@pytest.mark.parametrize("mode", ["wa", "aa"])
@pytest.mark.parametrize("sparse", [False, True])
def test_vectorised_knockout_equals_naive_recompute(mode, sparse):
    rng = np.random.default_rng(1)
    x = rng.poisson(0.6, size=(40, 25)).astype(float)
    x[0] = 0  # an empty cell
    x[1] = 0
    x[1, 3] = 2.5  # a cell whose only expressed gene is gene 3: knocking it out empties the cell
    table = rng.normal(size=(25, 6))
    mean, after = single_gene_mean_shifts(sp.csr_matrix(x) if sparse else x, table, mode)
    np.testing.assert_allclose(mean, embed_cells(x, table, mode).mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(after, _naive_means(x, table, mode), atol=1e-12)


@pytest.mark.parametrize("mode", ["wa", "aa"])
@pytest.mark.parametrize("sparse", [False, True])
def test_embed_cells_is_the_float64_reference_of_weighted_gene_average(mode, sparse):
    # One cell embedding: the knockout's float64 version must give tl.elmo_embed's numbers.
    from scelmo.cell_embedding import weighted_gene_average

    rng = np.random.default_rng(4)
    x = np.log1p(rng.poisson(0.7, size=(60, 40))).astype(np.float32)
    x[5] = 0  # an empty cell: a zero vector in both
    table = rng.normal(size=(40, 12))
    table[[3, 9]] = 0  # genes without an embedding
    matrix = sp.csr_matrix(x) if sparse else x
    with pytest.warns(UserWarning, match="zero total expression"):
        fast, _ = weighted_gene_average(matrix, table, mode=mode, progress=False)
    reference = embed_cells(matrix, table, mode)
    assert reference.dtype == np.float64
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(reference[5], 0.0)
    # The formula itself, written out for one cell.
    row = x[7].astype(np.float64)
    weights = row / (row.sum() if mode == "wa" else x.shape[1])
    np.testing.assert_allclose(reference[7], weights @ table, rtol=1e-12)


def test_gene_set_knockout_equals_naive_recompute():
    rng = np.random.default_rng(2)
    x = rng.poisson(0.8, size=(30, 12)).astype(float)
    table = rng.normal(size=(12, 5))
    knocked = x.copy()
    knocked[:, [2, 5, 7]] = 0
    for mode in ("wa", "aa"):
        expected = embed_cells(knocked, table, mode).mean(axis=0)
        np.testing.assert_allclose(gene_set_mean(x, table, [2, 5, 7], mode), expected, atol=1e-12)
        # A one-gene set is the single-gene knockout.
        _, after = single_gene_mean_shifts(x, table, mode)
        np.testing.assert_allclose(gene_set_mean(x, table, [4], mode), after[4], atol=1e-12)


def test_p_values_bins_and_adjustment():
    assert empirical_p_values(np.array([3.0]), [np.array([1.0, 3.0, 4.0, 0.0])], "greater")[
        0
    ] == pytest.approx(3 / 5)
    assert empirical_p_values(np.array([-3.0]), [np.array([1.0, 3.0, -4.0])], "two-sided")[
        0
    ] == pytest.approx(3 / 4)
    assert empirical_p_values(np.array([-3.0]), [np.array([1.0, -3.0])], "less")[0] == pytest.approx(2 / 3)
    assert np.isnan(empirical_p_values(np.array([1.0]), [np.array([])], "greater")[0])
    np.testing.assert_allclose(benjamini_hochberg(np.array([0.01, 0.02, 0.03, 0.5])), [0.04, 0.04, 0.04, 0.5])
    bins = expression_bins(np.array([0.0, 1, 2, 3, 4, 5, 6, 7]), np.array([False] + [True] * 7), 2)
    assert bins.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_zero_shot_screen_ranks_the_planted_driver_first():
    # Zero-shot, the driver's share of the average must stand out from random genes' shares.
    adata, table = disease_data(driver_rate=20.0)
    screen = se.tl.in_silico_knockout(
        table, adata, adata.var_names, "condition", control="healthy", n_perm=500, n_bins=5
    )
    assert screen.index[0] == DRIVER
    top = screen.loc[DRIVER]
    assert top["rank"] == 1
    assert top["shift"] > 0
    assert top["p_value"] < 0.05
    assert top["p_value"] == pytest.approx(1 / (1 + top["n_null"]))  # beats every matched null gene
    assert top["n_null"] >= 50
    # Genes that do not differ are mostly not significant.
    assert (screen["p_value"] < 0.05).mean() < 0.1
    assert list(screen.columns[:4]) == ["rank", "shift", "p_value", "p_adj"]
    assert adata.uns["in_silico_knockout"]["params"]["control"] == "healthy"
    assert adata.uns["in_silico_knockout"]["results"].index[0] == DRIVER
    # Reproducible from the seed.
    again = se.tl.in_silico_knockout(
        table, adata, adata.var_names, "condition", control="healthy", n_perm=500, n_bins=5, key_added=None
    )
    pd.testing.assert_frame_equal(screen, again)


def test_zero_shot_screen_reads_a_layer_or_raw():
    adata, table = disease_data(n_cells=40, driver_rate=20.0)
    kwargs = {"control": "healthy", "n_perm": 50, "n_bins": 2, "key_added": None}
    expected = se.tl.in_silico_knockout(table, adata, [DRIVER, "G3"], "condition", **kwargs)
    moved = adata.copy()
    moved.raw = adata
    moved.layers["log1p"] = adata.X.copy()
    moved.X = sp.csr_matrix(adata.shape, dtype=np.float32)  # nothing left in X
    for where in ({"use_raw": True}, {"layer": "log1p"}):
        screen = se.tl.in_silico_knockout(table, moved, [DRIVER, "G3"], "condition", **kwargs, **where)
        pd.testing.assert_frame_equal(screen, expected)
    with pytest.raises(ValueError, match="No gene with an embedding is expressed"):
        se.tl.in_silico_knockout(table, moved, [DRIVER], "condition", **kwargs)


@pytest.fixture(scope="module")
def adapter_on_condition():
    """An adapter trained to tell disease from control (seeded)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("scvi")
    from scelmo.models import ElmoAdapter

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        adata, table = disease_data(seed=3)
        ElmoAdapter.setup_anndata(adata, labels_key="condition")
        model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=32, n_latent=16)
        model.train(max_epochs=15, lr=3e-3, batch_size=64, check_val_every_n_epoch=5)
    finally:
        torch.set_num_threads(threads)
    return model, adata


def test_adapter_screen_ranks_the_planted_driver_first(adapter_on_condition):
    model, adata = adapter_on_condition
    screen = se.tl.in_silico_knockout(
        model, adata, adata.var_names, "condition", control="healthy", disease="disease", n_perm=500, n_bins=5
    )
    assert screen.index[0] == DRIVER
    assert screen.loc[DRIVER, "p_value"] < 0.05
    assert screen.loc[DRIVER, "shift"] > 1.5 * screen["shift"].iloc[1]
    assert adata.uns["in_silico_knockout"]["params"]["table"] == "ElmoAdapter"
    # Candidates may be a subset; the statistics of a gene do not depend on the others screened.
    subset = se.tl.in_silico_knockout(
        model, adata, [DRIVER, "G3"], "condition", control="healthy", n_perm=500, n_bins=5, key_added=None
    )
    assert subset.loc[DRIVER, "shift"] == pytest.approx(screen.loc[DRIVER, "shift"])
    assert subset.loc[DRIVER, "p_value"] == pytest.approx(screen.loc[DRIVER, "p_value"])
    # The same screen from the adapter's public parts: its adapted table, mode and layer.
    assert (model.mode, model.layer) == ("wa", None)
    disease = (adata.obs["condition"] == "disease").to_numpy()
    direct = knockout_screen(
        adata.X,
        model.get_adapted_gene_embeddings(),
        adata.var_names,
        disease,
        ~disease,
        [DRIVER, "G3"],
        mode=model.mode,
        keyed_by_var_names=True,
        n_perm=500,
        n_bins=5,
    )
    pd.testing.assert_frame_equal(direct, subset)
    with pytest.raises(ValueError, match="an adapter uses its own layer"):
        se.tl.in_silico_knockout(model, adata, [DRIVER], "condition", control="healthy", layer="x")
    with pytest.raises(ValueError, match="an adapter uses its own layer"):
        se.tl.in_silico_knockout(model, adata, [DRIVER], "condition", control="healthy", use_raw=True)
    with pytest.raises(ValueError, match="other genes than the model"):
        se.tl.in_silico_knockout(model, adata[:, 1:].copy(), [DRIVER], "condition", control="healthy")


def test_gene_set_screen(adapter_on_condition):
    model, adata = adapter_on_condition
    sets = {"with_driver": [DRIVER, "G1", "G2"], "without": ["G1", "G2", "G5"]}
    screen = se.tl.in_silico_knockout(
        model, adata, sets, "condition", control="healthy", n_perm=200, n_bins=5, key_added=None
    )
    assert screen.index.name == "gene_set"
    assert screen.index[0] == "with_driver"
    assert screen.loc["with_driver", "p_value"] < 0.05
    assert screen.loc["with_driver", "genes"] == f"G1,G2,{DRIVER}"
    assert screen.loc["with_driver", "n_null"] == 200
    assert screen.loc["without", "p_value"] > 0.05


def test_screen_errors():
    adata, table = disease_data(n_cells=10, driver_rate=20.0)
    with pytest.raises(KeyError, match="'cond' is not a column"):
        se.tl.in_silico_knockout(table, adata, [DRIVER], "cond", control="healthy")
    with pytest.raises(ValueError, match="control 'ctrl' is not a category"):
        se.tl.in_silico_knockout(table, adata, [DRIVER], "condition", control="ctrl")
    with pytest.raises(ValueError, match="disease categories"):
        se.tl.in_silico_knockout(table, adata, [DRIVER], "condition", control="healthy", disease="flu")
    with pytest.raises(KeyError, match="Genes not in the data"):
        se.tl.in_silico_knockout(table, adata, ["NOPE"], "condition", control="healthy")
    with pytest.raises(
        TypeError, match=r"must be a trained scelmo\.models\.ElmoAdapter or a scelmo\.GeneEmbeddings"
    ):
        se.tl.in_silico_knockout({"G1": [0.0]}, adata, [DRIVER], "condition", control="healthy")
    scaled = adata.copy()
    scaled.X = scaled.X.toarray() - 1.0
    with pytest.raises(ValueError, match="not counts or log-normalised"):
        se.tl.in_silico_knockout(table, scaled, [DRIVER], "condition", control="healthy")
    x = adata.X.toarray()
    with pytest.raises(ValueError, match="No control cells"):
        knockout_screen(x, table.vectors, adata.var_names, np.ones(20, bool), np.zeros(20, bool), [DRIVER])
