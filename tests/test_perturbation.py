"""Perturbation prediction from gene embeddings: pseudo-bulk shifts, scores, model, baselines, CINEMA-OT path."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import scelmo as se
from scelmo.models.perturbation import cinemaot, pearson_top_de, perturbation_shifts

N_GENES, N_PERTURBATIONS, DIM = 100, 60, 16


def perturbation_screen(seed: int = 0) -> tuple[AnnData, se.GeneEmbeddings]:
    """Cells perturbed in one of 60 genes whose effect is a non-linear function of the gene's embedding."""
    rng = np.random.default_rng(seed)
    names = [f"P{i}" for i in range(N_PERTURBATIONS)]
    embeddings = rng.normal(size=(N_PERTURBATIONS, DIM))
    readout = rng.normal(size=(N_GENES, 8))
    mixing = rng.normal(size=(8, DIM)) / np.sqrt(DIM)
    effects = 0.5 * np.tanh(1.5 * embeddings @ mixing.T) @ readout.T + 0.3 * rng.normal(size=N_GENES)
    base = 3 + 0.5 * rng.normal(size=N_GENES)
    blocks = [base + 0.3 * rng.normal(size=(200, N_GENES))]
    labels = ["control"] * 200
    for i, name in enumerate(names):
        blocks.append(base + effects[i] + 0.3 * rng.normal(size=(20, N_GENES)))
        labels += [name] * 20
    x = np.clip(np.vstack(blocks), 0, None).astype(np.float32)
    adata = AnnData(x, obs=pd.DataFrame({"gene": labels}, index=[f"c{i}" for i in range(len(labels))]))
    adata.var_names = [f"G{i}" for i in range(N_GENES)]
    return adata, se.GeneEmbeddings(names, embeddings)


@pytest.fixture(autouse=True)
def _one_thread():
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_perturbation_shifts_are_pseudo_bulk_differences():
    adata, _ = perturbation_screen()
    shifts = perturbation_shifts(adata, "gene", "control")
    assert len(shifts.perturbations) == N_PERTURBATIONS
    assert "control" not in shifts.perturbations
    x = adata.X
    control = x[adata.obs["gene"].to_numpy() == "control"].mean(axis=0)
    expected = x[adata.obs["gene"].to_numpy() == "P7"].mean(axis=0) - control
    np.testing.assert_allclose(shifts.to_dataframe().loc["P7"].to_numpy(), expected, rtol=1e-5, atol=1e-5)
    assert shifts.n_cells.tolist() == [20] * N_PERTURBATIONS
    with pytest.raises(ValueError, match="control 'ctrl' is not a category"):
        perturbation_shifts(adata, "gene", "ctrl")
    with pytest.raises(KeyError, match="perturbation_key 'guide'"):
        perturbation_shifts(adata, "guide", "control")


def test_pearson_on_top_de_genes():
    observed = np.array([5.0, -4.0, 0.1, 0.0, 0.2])
    assert pearson_top_de(observed * 2 + 1, observed, n_top=2) == pytest.approx(1.0)
    # Only the top genes count: a wrong prediction on small changes does not matter.
    predicted = np.array([5.0, -4.0, 9.0, -9.0, 3.0])
    assert pearson_top_de(predicted, observed, n_top=2) == pytest.approx(1.0)
    assert pearson_top_de(predicted, observed, n_top=5) < 0.5
    assert np.isnan(pearson_top_de(np.ones(5), observed, n_top=3))


@pytest.fixture(scope="module")
def evaluation():
    pytest.importorskip("torch")
    pytest.importorskip("scvi")
    from scelmo.models.perturbation import evaluate_perturbation_prediction

    adata, table = perturbation_screen()
    return evaluate_perturbation_prediction(adata, table, "gene", "control", test_size=0.25, seed=0)


def test_model_beats_the_mean_baseline_on_held_out_perturbations(evaluation):
    summary = evaluation.attrs["summary"]
    assert summary["n_test"] == 15
    assert summary["n_train"] == 45
    assert summary["model_mean_pearson"] > 0.9
    assert summary["model_mean_pearson"] > summary["mean_baseline_mean_pearson"] + 0.4
    assert (evaluation["model"] > evaluation["mean_baseline"]).mean() >= 0.9
    assert summary["linear_baseline_mean_pearson"] > summary["mean_baseline_mean_pearson"]


def test_model_save_load_round_trip_and_unseen_genes(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("scvi")
    from scelmo.models import ElmoPerturbation

    adata, table = perturbation_screen(seed=1)
    train = adata[adata.obs["gene"].isin(["control", *[f"P{i}" for i in range(40)]])].copy()
    ElmoPerturbation.setup_anndata(train, perturbation_key="gene", control="control")
    model = ElmoPerturbation(train, gene_embeddings=table, seed=0)
    model.train(max_epochs=100)
    assert len(model.train_perturbations_) + len(model.validation_perturbations_) == 40
    # Unseen perturbations: predicted from the full table.
    unseen = model.predict(["P50", "P51"], gene_embeddings=table)
    assert unseen.shape == (2, N_GENES)
    assert list(unseen.columns) == list(adata.var_names)
    expression = model.predict(["P50"], gene_embeddings=table, kind="expression")
    np.testing.assert_allclose(
        expression.to_numpy() - unseen.loc[["P50"]].to_numpy(), model.control_mean_[None, :], atol=1e-6
    )
    with pytest.raises(KeyError, match="No gene embedding for"):
        model.predict(["P50"])  # not among the rows stored with the model
    assert model.get_latent_representation(["P1", "P2"]).shape == (2, 32)

    model.save(tmp_path / "perturbation")
    loaded = ElmoPerturbation.load(tmp_path / "perturbation", train)
    pd.testing.assert_frame_equal(loaded.predict(), model.predict())
    pd.testing.assert_frame_equal(
        loaded.predict(["P50"], gene_embeddings=table), model.predict(["P50"], gene_embeddings=table)
    )
    assert loaded.train_perturbations_ == model.train_perturbations_

    # Reproducible from the seed.
    again = ElmoPerturbation(train, gene_embeddings=table, seed=0)
    again.train(max_epochs=100)
    pd.testing.assert_frame_equal(again.predict(), model.predict())


def test_model_errors():
    pytest.importorskip("torch")
    pytest.importorskip("scvi")
    from scelmo.models import ElmoPerturbation

    adata, table = perturbation_screen()
    with pytest.raises(ValueError, match="needs `perturbation_key` and `control`"):
        ElmoPerturbation.setup_anndata(adata, perturbation_key="gene")
    with pytest.raises(ValueError, match="control 'ctrl' is not a category"):
        ElmoPerturbation.setup_anndata(adata, perturbation_key="gene", control="ctrl")
    ElmoPerturbation.setup_anndata(adata, perturbation_key="gene", control="control")
    with pytest.raises(TypeError, match="needs `gene_embeddings`"):
        ElmoPerturbation(adata)
    few = table.subset(["P0", "P1", "P2"])
    model = ElmoPerturbation(adata, gene_embeddings=few)
    with pytest.warns(UserWarning, match="57 perturbations have no gene embedding"):
        model.train(max_epochs=2, validation_size=0)


def test_cinemaot_runs_pertpy_on_the_elmo_embedding(monkeypatch):
    calls = {}

    class FakeCinemaot:
        def causaleffect(self, adata, **kwargs):
            calls.update(kwargs)
            calls["rep"] = adata.obsm[kwargs["use_rep"]]
            return "effects"

    fake = types.ModuleType("pertpy")
    fake.tl = types.SimpleNamespace(Cinemaot=FakeCinemaot)
    monkeypatch.setitem(sys.modules, "pertpy", fake)
    adata, _ = perturbation_screen()
    adata.obsm["X_elmo"] = np.random.default_rng(0).normal(size=(adata.n_obs, 40)).astype(np.float32)
    out = cinemaot(adata, "gene", "control", n_components=10, thres=0.5)
    assert out == "effects"
    assert calls["use_rep"] == "X_elmo_pca"
    assert calls["dim"] == 10
    assert calls["thres"] == 0.5
    assert calls["pert_key"] == "gene"
    assert calls["control"] == "control"
    assert adata.obsm["X_elmo_pca"].shape == (adata.n_obs, 10)
    # Principal components: decreasing variance.
    variances = adata.obsm["X_elmo_pca"].var(axis=0)
    assert np.all(np.diff(variances) <= 1e-6)
    with pytest.raises(KeyError, match="obsm\\['X_other'\\] not found"):
        cinemaot(adata, "gene", "control", use_rep="X_other")


def test_cinemaot_without_pertpy_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pertpy", None)
    adata, _ = perturbation_screen()
    with pytest.raises(ImportError, match="pip install 'scelmo\\[pertpy\\]'"):
        cinemaot(adata, "gene", "control")
