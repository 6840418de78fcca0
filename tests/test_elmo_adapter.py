"""ElmoAdapter: losses, setup errors, training with kNN validation, reproducibility, save/load."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import scelmo as se

torch = pytest.importorskip("torch")
pytest.importorskip("scvi")

from scelmo.models.elmo_adapter import ElmoAdapter, knn_accuracy, triplet_margin_all

N_GENES, DIM = 60, 16
TYPES = ("T", "B", "NK")
# scELMo's rule for the kept round (10-NN accuracy); the default (10-NN macro-F1) is tested below.
TRAIN = {
    "max_epochs": 30,
    "lr": 3e-3,
    "batch_size": 64,
    "check_val_every_n_epoch": 3,
    "select_on": "knn_accuracy",
}


def synthetic_cells(
    n_per_type: int | dict[str, int] = 80, *, seed: int = 0, batch_shift: float = 0.0
) -> tuple[AnnData, se.GeneEmbeddings]:
    """Log-normalised cells of three types, each with five planted marker genes, in two batches.

    ``n_per_type`` is the number of cells of every type, or a dict type -> number.
    With ``batch_shift``, ten genes (not markers) are up by that much (log scale) in batch 1.
    """
    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(N_GENES)]
    sizes = n_per_type if isinstance(n_per_type, dict) else dict.fromkeys(TYPES, n_per_type)
    blocks, labels = [], []
    for t, name in enumerate(TYPES):
        rate = np.full(N_GENES, 1.0)
        rate[5 * t : 5 * t + 5] = 8.0  # markers of this type
        blocks.append(rng.poisson(rate, size=(sizes[name], N_GENES)))
        labels += [name] * sizes[name]
    counts = np.vstack(blocks).astype(np.float32)
    batch = rng.integers(0, 2, size=len(labels))
    x = np.log1p(counts)
    x[batch == 1, 40:50] += batch_shift
    obs = pd.DataFrame(
        {"cell_type": labels, "batch": [f"b{b}" for b in batch]},
        index=[f"cell{i}" for i in range(len(labels))],
    )
    adata = AnnData(x, obs=obs)
    adata.var_names = genes
    table = se.GeneEmbeddings(genes, rng.normal(size=(N_GENES, DIM)), provenance={"text_source": "synthetic"})
    return adata, table


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is faster and keeps timings stable on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained() -> tuple[ElmoAdapter, AnnData]:
    adata, table = synthetic_cells()
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=32, n_latent=16, seed=0)
    model.train(**TRAIN)
    return model, adata


def _brute_triplet(z: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    unit = torch.nn.functional.normalize(z, dim=1)
    dist = torch.sqrt(torch.clamp(2 - 2 * unit @ unit.T, min=1e-12))
    anchors, positives, negatives = [], [], []
    for a in range(len(labels)):
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(len(labels)):
                if labels[n] != labels[a]:
                    anchors.append(a)
                    positives.append(p)
                    negatives.append(n)
    losses = torch.relu(dist[anchors, positives] - dist[anchors, negatives] + margin)
    return losses[losses > 0].mean()


@pytest.mark.parametrize("margin", [0.05, 0.5, 2.5])
def test_triplet_loss_equals_all_triplets_brute_force(margin):
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(24, 5, generator=generator, requires_grad=True)
    labels = torch.randint(0, 3, (24,), generator=generator)
    fast = triplet_margin_all(z, labels, margin)
    (grad_fast,) = torch.autograd.grad(fast, z)
    slow = _brute_triplet(z, labels, margin)
    (grad_slow,) = torch.autograd.grad(slow, z)
    assert float(fast.detach()) == pytest.approx(float(slow.detach()), rel=1e-5)
    assert torch.allclose(grad_fast, grad_slow, atol=1e-6)


def test_triplet_loss_degenerate_batches_are_zero():
    z = torch.randn(4, 3)
    assert float(triplet_margin_all(z, torch.zeros(4, dtype=torch.long), 0.05)) == 0.0  # one class
    assert float(triplet_margin_all(z[:2], torch.tensor([0, 1]), 0.05)) == 0.0  # too small
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    assert float(triplet_margin_all(separated, torch.tensor([0, 0, 1, 1]), 0.05)) == 0.0


def test_knn_accuracy_majority_vote():
    reference = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    ref_labels = torch.tensor([0, 0, 1, 1])
    query = torch.tensor([[1.0, 0.05], [0.05, 1.0]])
    assert knn_accuracy(query, torch.tensor([0, 1]), reference, ref_labels, k=2, n_labels=2) == 1.0
    assert knn_accuracy(query, torch.tensor([1, 0]), reference, ref_labels, k=2, n_labels=2) == 0.0


def test_setup_anndata_errors():
    adata, _ = synthetic_cells(n_per_type=5)
    with pytest.raises(KeyError, match=r"'celltype' is not a column of adata\.obs"):
        ElmoAdapter.setup_anndata(adata, labels_key="celltype")
    with pytest.raises(ValueError, match="needs `labels_key`"):
        ElmoAdapter.setup_anndata(adata)
    with pytest.raises(KeyError, match="Layer 'counts' not found"):
        ElmoAdapter.setup_anndata(adata, labels_key="cell_type", layer="counts")
    with pytest.raises(KeyError, match="batch_key 'donor'"):
        ElmoAdapter.setup_anndata(adata, labels_key="cell_type", batch_key="donor")
    scaled = adata.copy()
    scaled.X = scaled.X - scaled.X.mean(axis=0)
    with pytest.raises(ValueError, match="not counts or log-normalised expression"):
        ElmoAdapter.setup_anndata(scaled, labels_key="cell_type")


def test_model_errors():
    adata, table = synthetic_cells(n_per_type=5)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    with pytest.raises(TypeError, match="needs `gene_embeddings`"):
        ElmoAdapter(adata)
    with pytest.raises(ValueError, match="at least two batches"):
        ElmoAdapter(adata, gene_embeddings=table, batch_correction="adversarial")
    with pytest.raises(ValueError, match="must be None, 'adversarial' or 'centroid'"):
        ElmoAdapter(adata, gene_embeddings=table, batch_correction="harmony")


def test_training_learns_planted_types_and_keeps_best_weights(trained):
    model, adata = trained
    assert model.is_trained
    # Held-out cells from the same generator: the adapter predicts their planted type.
    fresh, _ = synthetic_cells(n_per_type=30, seed=7)
    accuracy = float((model.predict(fresh) == fresh.obs["cell_type"].to_numpy()).mean())
    assert accuracy >= 0.95
    probabilities = model.predict(fresh, soft=True)
    assert list(probabilities.columns) == sorted(TYPES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # Validation every 3 epochs, 10 rounds; the best round's weights are the ones we hold.
    epochs = [epoch for epoch, _ in model.validation_knn_history_]
    assert epochs == list(range(3, 31, 3))
    scores = [score for _, score in model.validation_knn_history_]
    assert model.best_validation_knn_accuracy_ == max(scores)
    assert model.best_epoch_ == epochs[len(scores) - 1 - int(np.argmax(scores[::-1]))]  # latest of the best
    z = torch.from_numpy(model.get_latent_representation())
    codes = torch.as_tensor(
        np.array(pd.Categorical(adata.obs["cell_type"], categories=model.labels).codes)
    ).long()
    train, val = model.train_indices, model.validation_indices
    assert len(val) == 24  # 10% of each type
    recomputed = knn_accuracy(z[val], codes[val], z[train], codes[train], k=10, n_labels=3)
    assert recomputed == pytest.approx(model.best_validation_knn_accuracy_)
    assert "validation_knn_accuracy" in model.history


def test_training_is_reproducible(trained):
    model, _ = trained
    adata, table = synthetic_cells()
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    again = ElmoAdapter(adata, gene_embeddings=table, n_hidden=32, n_latent=16, seed=0)
    again.train(**TRAIN)
    np.testing.assert_array_equal(again.get_latent_representation(), model.get_latent_representation())
    assert again.validation_knn_history_ == model.validation_knn_history_
    other = ElmoAdapter(adata, gene_embeddings=table, n_hidden=32, n_latent=16, seed=1)
    other.train(max_epochs=2, batch_size=64, check_val_every_n_epoch=2)
    assert not np.array_equal(other.get_latent_representation(), model.get_latent_representation())


def test_save_load_round_trip_gives_identical_predictions(trained, tmp_path):
    model, adata = trained
    model.save(tmp_path / "adapter")
    loaded = ElmoAdapter.load(tmp_path / "adapter", adata)
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())
    np.testing.assert_array_equal(loaded.predict(soft=True).to_numpy(), model.predict(soft=True).to_numpy())
    assert loaded.best_epoch_ == model.best_epoch_
    # Without AnnData: predictions on any cells with the model's genes, labelled or not.
    with pytest.warns(UserWarning, match="no saved anndata"):
        bare = ElmoAdapter.load(tmp_path / "adapter")
    unlabelled = AnnData(adata.X.copy(), var=adata.var.copy())
    np.testing.assert_array_equal(bare.predict(unlabelled), model.predict())
    # The model stores only the table rows it matched, keyed by its genes.
    stored = loaded.init_params_["non_kwargs"]["gene_embeddings"]
    assert list(stored.genes) == list(adata.var_names)


def test_validation_records_the_classifier_of_the_kept_round():
    adata, table = synthetic_cells(n_per_type=40, seed=4)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8, seed=0)
    model.train(max_epochs=12, batch_size=32, check_val_every_n_epoch=2)
    assert [epoch for epoch, _ in model.validation_classifier_history_] == list(range(2, 13, 2))
    kept = dict(model.validation_classifier_history_)[model.best_epoch_]
    assert model.best_validation_classifier_accuracy_ == kept
    # The restored weights are that round's: the classifier scores the same on the validation cells.
    val = model.validation_indices
    truth = adata.obs["cell_type"].to_numpy()[val]
    assert float((model.predict(indices=val, method="classifier") == truth).mean()) == pytest.approx(kept)
    # The classifier accuracy logged per epoch is the same number.
    logged = model.history["validation_accuracy"]["validation_accuracy"]
    assert float(logged.loc[model.best_epoch_ - 1]) == pytest.approx(kept)


def _knn_reference(model: ElmoAdapter, adata: AnnData, query: AnnData):
    """scikit-learn's cosine 10-NN on the model's latent: reference = the training cells."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=10, metric="cosine", algorithm="brute")
    knn.fit(model.get_latent_representation(), adata.obs["cell_type"].astype(str).to_numpy())
    return knn, model.get_latent_representation(query)


def test_predict_with_scelmo_defaults_finds_a_small_class_and_matches_knn_on_the_latent():
    """scELMo's settings on a few hundred cells: 30 optimiser steps, too few for the classifier.

    The classifier then predicts a class or two; the default readout (10-NN on the adapted
    embedding among the training cells) finds the small class and is as good as that 10-NN.
    """
    from sklearn.metrics import f1_score

    adata, table = synthetic_cells({"T": 200, "B": 200, "NK": 25}, seed=6)
    fresh, _ = synthetic_cells({"T": 40, "B": 40, "NK": 10}, seed=8)
    truth = fresh.obs["cell_type"].to_numpy()
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=32, n_latent=16, seed=0)
    model.train()  # scELMo's defaults: minibatches of 512, 30 epochs, Adam 1e-3
    # The kept round is the latest with the best validation 10-NN macro-F1 (the default select_on).
    history = model.validation_history_["knn_macro_f1"]
    scores = [score for _, score in history]
    assert model.best_epoch_ == history[len(scores) - 1 - int(np.argmax(scores[::-1]))][0]
    knn_accuracy_by_epoch = dict(model.validation_history_["knn_accuracy"])
    assert model.best_validation_knn_accuracy_ == knn_accuracy_by_epoch[model.best_epoch_]
    predicted = model.predict(fresh)
    knn, query = _knn_reference(model, adata, fresh)
    by_knn = knn.predict(query)
    assert (predicted[truth == "NK"] == "NK").mean() >= 0.8
    assert f1_score(truth, predicted, average="macro") >= f1_score(truth, by_knn, average="macro") - 0.02
    assert f1_score(truth, predicted, average="macro") >= 0.9
    # The classifier, trained with the same 30 steps, is what predict() used to return.
    by_classifier = model.predict(fresh, method="classifier")
    assert f1_score(truth, by_classifier, average="macro") < f1_score(truth, predicted, average="macro") - 0.2


def test_knn_readout_is_the_cosine_vote_among_the_training_cells(trained):
    model, adata = trained
    fresh, _ = synthetic_cells(n_per_type=30, seed=7)
    knn, query = _knn_reference(model, adata, fresh)
    soft = model.predict(fresh, soft=True)
    assert list(soft.columns) == list(knn.classes_)
    # Uniform votes of the same 10 neighbours: the class fractions are scikit-learn's probabilities.
    np.testing.assert_allclose(soft.to_numpy(), knn.predict_proba(query), atol=1e-6)
    by_vote = soft.columns.to_numpy()[soft.to_numpy().argmax(axis=1)]
    np.testing.assert_array_equal(model.predict(fresh), by_vote)
    assert model.reference_latent_.shape == (adata.n_obs, 16)
    with pytest.raises(ValueError, match="must be 'knn' or 'classifier'"):
        model.predict(fresh, method="svm")
    untrained = ElmoAdapter(adata, gene_embeddings=model.init_params_["non_kwargs"]["gene_embeddings"])
    with (
        pytest.warns(UserWarning, match="untrained model"),
        pytest.raises(ValueError, match="no kNN reference"),
    ):
        untrained.predict(fresh)


def test_class_weight_and_model_selection_options():
    adata, table = synthetic_cells({"T": 60, "B": 60, "NK": 12}, seed=6)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8, seed=0)
    with pytest.raises(ValueError, match="`class_weight` must be None or 'balanced'"):
        model.train(max_epochs=2, check_val_every_n_epoch=1, class_weight="inverse")
    with pytest.raises(ValueError, match="`select_on` must be one of"):
        model.train(max_epochs=2, check_val_every_n_epoch=1, select_on="loss")
    model.train(max_epochs=6, batch_size=32, check_val_every_n_epoch=2, select_on="classifier_macro_f1")
    history = model.validation_history_["classifier_macro_f1"]
    scores = [score for _, score in history]
    assert model.best_epoch_ == history[len(scores) - 1 - int(np.argmax(scores[::-1]))][0]
    assert model.best_validation_scores_["classifier_macro_f1"] == max(scores)
    # Balanced weights: n / (n_classes * n_class) of the training cells, in the cross-entropy.
    x = torch.from_numpy(adata.X)
    labels = torch.as_tensor(np.array(pd.Categorical(adata.obs["cell_type"]).codes)).long()
    weights = torch.tensor([1.0, 2.0, 0.5])
    model.module.eval()
    with torch.no_grad():
        logits = model.module(x)["logits"]
        per_cell = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        expected = (weights[labels] * per_cell).sum() / weights[labels].sum()
        got = model.module.loss(x, labels, class_weights=weights)["classification"]
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_training_without_validation_keeps_the_last_weights():
    adata, table = synthetic_cells(n_per_type=20)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8)
    model.train(max_epochs=2, validation_size=0, batch_size=32)
    assert model.best_epoch_ is None
    assert len(model.validation_indices) == 0
    with pytest.warns(UserWarning, match="no validation round runs"):
        model.train(max_epochs=2, batch_size=32)


def test_adapted_gene_table(trained):
    model, adata = trained
    adapted = model.get_adapted_gene_embeddings()
    assert adapted.dim == 16
    assert list(adapted.genes) == list(adata.var_names)
    # The cell embedding is the expression-weighted average of the adapted gene vectors.
    x = adata.X / adata.X.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.get_latent_representation(), x @ adapted.vectors, rtol=1e-4, atol=1e-6)


def test_unmatched_genes_contribute_nothing():
    adata, table = synthetic_cells(n_per_type=10)
    partial = table.subset([f"G{i}" for i in range(40)])
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=partial, min_coverage=0.5)
    matrix, matched = model.adapted_gene_matrix()
    assert matched.sum() == 40
    assert np.abs(matrix[~matched]).sum() == 0


def test_predict_refuses_other_genes(trained):
    model, adata = trained
    with pytest.raises(ValueError, match="other genes than the model"):
        model.predict(adata[:, :30].copy())
    negative = adata.copy()
    negative.X[0, 0] = -1.0
    with pytest.raises(ValueError, match=r"adata\.X has negative values"):
        model.get_latent_representation(negative)


def test_centroid_batch_correction_removes_batch_signal():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    adata, table = synthetic_cells(batch_shift=1.5, seed=3)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type", batch_key="batch")
    batch = adata.obs["batch"].to_numpy()
    scores = {}
    for correction in (None, "centroid"):
        model = ElmoAdapter(
            adata,
            gene_embeddings=table,
            n_hidden=32,
            n_latent=16,
            batch_correction=correction,
            batch_weight=100.0,
        )
        model.train(**TRAIN)
        z = model.get_latent_representation()
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        batch_accuracy = cross_val_score(LogisticRegression(max_iter=2000), z, batch, cv=5).mean()
        type_accuracy = float((model.predict() == adata.obs["cell_type"].to_numpy()).mean())
        scores[correction] = (batch_accuracy, type_accuracy)
    assert scores[None][0] > 0.75  # the planted batch effect is visible without correction
    assert scores["centroid"][0] < scores[None][0] - 0.1
    assert scores["centroid"][1] >= 0.9  # cell types are kept
    assert "train_batch" in model.history


def test_adversarial_batch_correction_trains():
    adata, table = synthetic_cells(n_per_type=20, batch_shift=1.5, seed=3)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type", batch_key="batch")
    model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8, batch_correction="adversarial")
    assert model.module.adversary is not None
    model.train(max_epochs=3, batch_size=32, check_val_every_n_epoch=3)
    assert model.history["train_batch"].to_numpy().min() > 0  # the adversary's cross-entropy


def test_gene_residual_starts_as_the_papers_adapter():
    adata, table = synthetic_cells(n_per_type=10)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    paper = ElmoAdapter(adata, gene_embeddings=table, n_hidden=32, n_latent=16, seed=0)
    ours = ElmoAdapter(adata, gene_embeddings=table, n_hidden=32, n_latent=16, seed=0, gene_residual=True)
    assert paper.module.gene_residual is None
    assert ours.module.gene_residual.shape == (N_GENES, 16)
    assert float(ours.module.gene_residual.detach().abs().sum()) == 0.0
    # Same seed, same shared weights: the residual is the only extra parameter.
    paper_state, our_state = paper.module.state_dict(), ours.module.state_dict()
    assert set(our_state) - set(paper_state) == {"gene_residual"}
    for key, value in paper_state.items():
        assert torch.equal(value, our_state[key]), key
    x = torch.from_numpy(adata.X)
    with torch.no_grad():
        assert torch.equal(ours.module(x)["logits"], paper.module(x)["logits"])
        assert torch.equal(ours.module.adapted_gene_table(), paper.module.adapted_gene_table())


def test_gene_residual_learns_what_the_text_table_cannot_say():
    """All genes share one text vector, so the text-only adapter sees the same cell everywhere."""
    adata, _ = synthetic_cells(seed=2)
    same = np.tile(np.random.default_rng(0).normal(size=DIM), (N_GENES, 1))
    table = se.GeneEmbeddings(adata.var_names, same)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    fresh, _ = synthetic_cells(n_per_type=30, seed=7)
    accuracy = {}
    for residual in (False, True):
        model = ElmoAdapter(
            adata, gene_embeddings=table, n_hidden=32, n_latent=16, gene_residual=residual, seed=0
        )
        model.train(**TRAIN)
        accuracy[residual] = float((model.predict(fresh) == fresh.obs["cell_type"].to_numpy()).mean())
    assert accuracy[False] <= 0.5  # one embedding for every cell: one predicted class
    assert accuracy[True] >= 0.95
    assert float(model.module.gene_residual.detach().abs().sum()) > 0


def test_gene_residual_reaches_unmatched_genes_and_survives_save_load(tmp_path):
    adata, table = synthetic_cells(n_per_type=20)
    partial = table.subset([f"G{i}" for i in range(40)])
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    model = ElmoAdapter(adata, gene_embeddings=partial, n_hidden=16, n_latent=8, gene_residual=True)
    model.train(max_epochs=4, batch_size=32, check_val_every_n_epoch=2)
    matrix, has_vector = model.adapted_gene_matrix()
    assert has_vector.all()
    residual = model.module.gene_residual.detach().numpy()
    np.testing.assert_array_equal(matrix[40:], residual[40:])  # no text vector: the residual only
    assert np.abs(matrix[40:]).sum() > 0
    assert list(model.get_adapted_gene_embeddings().genes) == list(adata.var_names)
    model.save(tmp_path / "residual")
    loaded = ElmoAdapter.load(tmp_path / "residual", adata)
    assert loaded.module.gene_residual is not None
    np.testing.assert_array_equal(loaded.predict(soft=True).to_numpy(), model.predict(soft=True).to_numpy())
    np.testing.assert_array_equal(loaded.get_latent_representation(), model.get_latent_representation())
    # In-silico knockout reads the same table: a gene without text has an effect through its residual.
    screen = se.tl.in_silico_knockout(
        model, adata, ["G45"], "cell_type", control="T", n_perm=10, key_added=None
    )
    assert screen.loc["G45", "shift"] != 0


def test_gene_dropout_acts_in_training_only_and_is_reproducible():
    adata, table = synthetic_cells(n_per_type=20)
    ElmoAdapter.setup_anndata(adata, labels_key="cell_type")
    with pytest.raises(ValueError, match=r"`gene_dropout` must be in \[0, 1\)"):
        ElmoAdapter(adata, gene_embeddings=table, gene_dropout=1.0)
    plain = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8, seed=0)
    dropped = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8, seed=0, gene_dropout=0.5)
    x = torch.from_numpy(adata.X)
    labels = torch.as_tensor(np.array(pd.Categorical(adata.obs["cell_type"]).codes)).long()
    with torch.no_grad():
        plain.module.eval()
        dropped.module.eval()
        assert torch.equal(dropped.module.loss(x, labels)["loss"], plain.module.loss(x, labels)["loss"])
        dropped.module.train()
        torch.manual_seed(0)
        first = dropped.module.loss(x, labels)["loss"]
        second = dropped.module.loss(x, labels)["loss"]
        torch.manual_seed(0)
        assert torch.equal(dropped.module.loss(x, labels)["loss"], first)
    assert not torch.equal(first, second)
    assert not torch.equal(first, plain.module.loss(x, labels)["loss"].detach())
    latents = []
    for _ in range(2):
        model = ElmoAdapter(adata, gene_embeddings=table, n_hidden=16, n_latent=8, seed=0, gene_dropout=0.5)
        model.train(max_epochs=4, batch_size=32, check_val_every_n_epoch=2)
        latents.append(model.get_latent_representation())
    np.testing.assert_array_equal(latents[0], latents[1])


def test_import_scelmo_does_not_import_torch_or_scvi():
    code = "import sys, scelmo; scelmo.models; print(sorted(m for m in ('torch', 'scvi', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
