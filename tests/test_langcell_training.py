"""LangCell training: few-shot fine-tuning of both encoders, and LangCell-CE (full and linear probe)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from _langcell_fixtures import CELL, cell_config, make_states, write_checkpoint

from scelmo.cell_tokens import CellTokens
from scelmo.models import LangCell, LangCellCE
from scelmo.models.langcell._training import (
    length_grouped_batches,
    linear_schedule,
    scaled_warmup,
)

TEXTS = {
    "T cell": "cell type: t lymphocyte. a cell of the immune system",
    "B cell": "cell type: b lymphocyte.",
}
MARKERS = {"T cell": [812, 77, 25000], "B cell": [13, 14000, 600]}
#: Each group's other genes come from its own pool.
POOLS = {"T cell": (2000, 7000), "B cell": (7000, 12000)}


def separable_cells(n_per_class: int, seed: int) -> ad.AnnData:
    """Two groups whose token sequences start with different marker genes, followed by random genes of a group pool."""
    rng = np.random.default_rng(seed)
    labels, seqs = [], []
    for label, markers in MARKERS.items():
        for _ in range(n_per_class):
            n = int(rng.integers(5, 40))
            rest = rng.choice(np.arange(*POOLS[label]), size=n, replace=False)
            seqs.append(np.concatenate([markers, rest]))
            labels.append(label)
    lengths = [len(s) for s in seqs]
    tokens = CellTokens(np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(seqs).astype(np.int16))
    obs = pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"cell{i}" for i in range(len(seqs))])
    adata = ad.AnnData(np.zeros((len(seqs), 1), dtype=np.float32), obs=obs)
    adata.obsm["langcell_tokens"] = tokens.to_sparse()
    return adata


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and immune to other processes competing for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("langcell") / "ckpt", seed=5, with_vocab=True)


@pytest.fixture(scope="module")
def train_data() -> ad.AnnData:
    return separable_cells(16, seed=0)


@pytest.fixture(scope="module")
def test_data() -> ad.AnnData:
    return separable_cells(10, seed=1)


def accuracy(predicted, adata) -> float:
    return float(np.mean(np.asarray(predicted) == adata.obs["cell_type"].astype(str).to_numpy()))


# --- shared pieces --------------------------------------------------------------------------


def test_length_grouped_batches_cover_every_cell_once():
    lengths = np.random.default_rng(0).integers(1, 1000, size=203)
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(1), megabatch=4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(203))
    assert all(len(b) <= 16 for b in batches)
    # Within a megabatch, cells are sorted by length: batches span narrow length ranges.
    spread = np.mean([np.ptp(lengths[b]) for b in batches if len(b) > 1])
    assert spread < 0.5 * np.ptp(lengths)
    again = length_grouped_batches(lengths, 16, np.random.default_rng(1), megabatch=4)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))  # seeded


def test_warmup_and_schedule():
    assert scaled_warmup(500, 100_000) == 500
    assert scaled_warmup(500, 1_000) == 100
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = linear_schedule(opt, 2, 6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert lrs == pytest.approx([0.0, 1.0, 2.0, 1.5, 1.0, 0.5])


# --- few-shot LangCell --------------------------------------------------------------------


def test_few_shot_training_lowers_the_loss_and_learns(checkpoint, train_data, test_data, tmp_path):
    model = LangCell.from_pretrained(checkpoint.path)
    before = model.predict(test_data, TEXTS, progress=False)
    ctm_head = {k: v.clone() for k, v in model.ctm_head.state_dict().items()}
    history = model.train_few_shot(
        train_data, "cell_type", TEXTS, epochs=10, batch_size=8, lr=1e-3, progress=False
    )
    assert len(history.loss) == 10
    # The CTM part cannot go below CE([1, 0]) = 0.31 (it treats probabilities as logits).
    assert history.loss[-1] < 0.7 * history.loss[0]
    assert history.parts["loss_sim"][-1] < 0.3 * history.parts["loss_sim"][0]
    assert history.parts["loss_ctm"][-1] < history.parts["loss_ctm"][0]
    assert history.accuracy[-1] >= history.accuracy[0]
    assert not model.training
    for key, value in model.ctm_head.state_dict().items():
        assert torch.equal(value, ctm_head[key])  # frozen, as published
    after = model.predict(test_data, progress=False)  # the trained classes are remembered
    assert accuracy(after, test_data) >= 0.9
    assert accuracy(after, test_data) > accuracy(before, test_data) or accuracy(before, test_data) >= 0.9

    model.save(tmp_path / "fewshot")
    loaded = LangCell.load(tmp_path / "fewshot")
    assert loaded.classes_ == ["T cell", "B cell"]
    assert loaded.checkpoint_hash == model.checkpoint_hash
    labels, probs = loaded.predict(test_data, return_probs=True, progress=False)
    np.testing.assert_array_equal(labels, after)
    assert probs.shape == (test_data.n_obs, 2)


def test_few_shot_errors(checkpoint, train_data):
    model = LangCell.from_pretrained(checkpoint.path)
    with pytest.raises(KeyError, match="no text for the labels"):
        model.train_few_shot(train_data, "cell_type", {"T cell": "cell type: t."}, progress=False)
    with pytest.raises(KeyError, match="no column"):
        model.train_few_shot(train_data, "celltype", TEXTS, progress=False)
    with pytest.raises(ValueError, match="class_texts"):
        model.predict(train_data, progress=False)


# --- LangCell-CE ---------------------------------------------------------------------------


def test_ce_training_learns_and_round_trips(checkpoint, train_data, test_data, tmp_path):
    adata = train_data.copy()
    LangCellCE.setup_anndata(adata, labels_key="cell_type")
    model = LangCellCE(adata, pretrained=checkpoint.path, seed=0)
    assert model.labels_ == ["B cell", "T cell"]
    before = accuracy(model.predict(test_data, progress=False), test_data)
    history = model.train(epochs=8, batch_size=8, lr=3e-3, progress=False)
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert history.accuracy[-1] > history.accuracy[0] or history.accuracy[0] == 1.0
    predicted, probs = model.predict(test_data, return_probs=True, progress=False)
    assert accuracy(predicted, test_data) >= 0.9
    assert accuracy(predicted, test_data) >= before
    assert list(probs.columns) == model.labels_
    latent = model.get_latent_representation(test_data, progress=False)
    assert latent.shape == (test_data.n_obs, CELL["hidden"])

    model.save(tmp_path / "ce")
    meta = json.loads((tmp_path / "ce" / "langcell_ce.json").read_text())
    assert meta["labels"] == model.labels_
    assert meta["is_trained"]
    loaded = LangCellCE.load(tmp_path / "ce", adata)
    again, probs_again = loaded.predict(test_data, return_probs=True, progress=False)
    np.testing.assert_array_equal(again, predicted)
    np.testing.assert_array_equal(probs_again.to_numpy(), probs.to_numpy())
    np.testing.assert_array_equal(loaded.get_latent_representation(test_data, progress=False), latent)
    assert loaded.history_.loss == pytest.approx(history.loss)


def test_ce_is_seeded(checkpoint, train_data):
    runs = []
    for _ in range(2):
        adata = train_data.copy()
        LangCellCE.setup_anndata(adata, labels_key="cell_type")
        model = LangCellCE(adata, pretrained=LangCell.from_pretrained(checkpoint.path), seed=3)
        runs.append(model.train(epochs=2, batch_size=8, lr=1e-3, progress=False).loss)
    assert runs[0] == runs[1]


def test_ce_linear_probe_trains_only_the_classifier(checkpoint, train_data):
    adata = train_data.copy()
    LangCellCE.setup_anndata(adata, labels_key="cell_type")
    model = LangCellCE(adata, pretrained=checkpoint.path)
    frozen = {k: v.clone() for k, v in model.module.state_dict().items() if not k.startswith("classifier.")}
    classifier = model.module.classifier.weight.detach().clone()
    history = model.train(epochs=4, batch_size=8, linear_probe=True, progress=False)
    assert model.train_params_["lr"] == 5e-3
    assert model.train_params_["warmup_steps"] == 0
    for key, value in model.module.state_dict().items():
        if key in frozen:
            assert torch.equal(value, frozen[key]), key
    assert not torch.equal(model.module.classifier.weight, classifier)
    assert history.loss[-1] < history.loss[0]
    assert all(p.requires_grad for p in model.module.parameters())  # unfrozen again afterwards


def test_ce_adds_the_cls_row_to_a_vocabulary_without_it(tmp_path, train_data):
    """A BERT folder whose vocabulary stops before <cls> (25,426 tokens): the row is added, not refused."""
    spec = dict(CELL, vocab=25426)
    cell_bert, _, _ = make_states(seed=2, cell=spec)
    folder = tmp_path / "geneformer_like"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cell_config(spec)))
    torch.save(cell_bert, folder / "pytorch_model.bin")
    adata = train_data.copy()
    LangCellCE.setup_anndata(adata, labels_key="cell_type")
    model = LangCellCE(adata, pretrained=folder)
    embeddings = model.module.bert.embeddings.word_embeddings.weight.detach().clone()
    assert embeddings.shape[0] == 25427
    assert model.module.config.vocab_size == 25427
    assert torch.equal(embeddings[:25426], cell_bert["embeddings.word_embeddings.weight"])
    model.train(epochs=3, batch_size=8, lr=1e-3, progress=False)
    assert not torch.equal(model.module.bert.embeddings.word_embeddings.weight[25426], embeddings[25426])
    assert model.predict(progress=False).shape == (adata.n_obs,)


def test_ce_errors(checkpoint, train_data):
    adata = train_data.copy()
    with pytest.raises(ValueError, match="setup_anndata"):
        LangCellCE(adata, pretrained=checkpoint.path)
    LangCellCE.setup_anndata(adata)
    with pytest.raises(ValueError, match="without labels_key"):
        LangCellCE(adata, pretrained=checkpoint.path)
    with pytest.raises(KeyError, match="no column"):
        LangCellCE.setup_anndata(adata, labels_key="celltype")
    LangCellCE.setup_anndata(adata, labels_key="cell_type")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        LangCellCE(adata, pretrained=checkpoint.path / "text_bert" / "nothing")
    with pytest.raises(TypeError, match="pretrained"):
        LangCellCE(adata, pretrained=3)


def test_training_refuses_token_ids_outside_the_vocabulary(checkpoint, train_data):
    """Training would fail mid-epoch in the embedding lookup; it must refuse before the first step."""
    adata = train_data.copy()
    tokens = CellTokens.from_sparse(adata.obsm["langcell_tokens"])
    ids = tokens.tokens.astype(np.int32)
    ids[0] = CELL["vocab"] + 5
    adata.obsm["langcell_tokens"] = CellTokens(tokens.indptr, ids).to_sparse()
    message = rf"token id {CELL['vocab'] + 5} \(the largest\)"
    model = LangCell.from_pretrained(checkpoint.path)
    with pytest.raises(ValueError, match=message):
        model.train_few_shot(adata, "cell_type", TEXTS, epochs=1, progress=False)
    LangCellCE.setup_anndata(adata, labels_key="cell_type")
    ce = LangCellCE(adata, pretrained=checkpoint.path, seed=0)
    with pytest.raises(ValueError, match=message):
        ce.train(epochs=1, progress=False)
