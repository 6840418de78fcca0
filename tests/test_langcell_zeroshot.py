"""LangCell zero-shot: shared-K/V, length-sorted CTM equals the original per-class loop; the dispatcher contract."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).parent))
from _langcell_fixtures import write_checkpoint

import scelmo as se
from scelmo.annotation._langcell_zeroshot import class_groups, langcell_scores, langcell_zeroshot
from scelmo.cell_tokens import CellTokens
from scelmo.models import LangCell

ATOL = 1e-5
CLASSES = ["T cell", "B cell", "monocyte", "NK cell"]
# Texts of very different lengths, so that classes fall into several length groups.
TEXTS = [
    "cell type: t lymphocyte. a cell of the immune system that express cd4 or cd8",
    "cell type: b lymphocyte.",
    "cell type: monocyte. a blood cell of the immune system, cd14 +, that produces antibodies",
    "cell type: nk cell. natural killer",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and immune to other processes competing for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> LangCell:
    ckpt = write_checkpoint(tmp_path_factory.mktemp("langcell") / "ckpt", seed=3, with_vocab=True)
    return LangCell.from_pretrained(ckpt.path)


@pytest.fixture(scope="module")
def tokens() -> CellTokens:
    """23 cells of very different lengths (0 to 300 genes)."""
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 300, size=23)
    lengths[:2] = [0, 299]
    seqs = [rng.choice(np.arange(2, 25426), size=n, replace=False) for n in lengths]
    return CellTokens(np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(seqs).astype(np.int16))


def original_procedure(model: LangCell, tokens: CellTokens, texts, batch_size: int, alpha: float):
    """The released notebook's loop: unsorted batches, texts re-tokenised per class and batch, one
    multimodal pass per class that computes the cross-attention keys/values again."""
    F = torch.nn.functional
    tok = model.text_tokenizer
    n = tokens.n_cells
    order = np.random.default_rng(7).permutation(n)
    sim_all = np.zeros((n, len(texts)))
    ctm_all = np.zeros((n, len(texts)))
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
        text_embs = []
        for i in range(len(texts)):  # one text at a time, as text_encode(text)
            single = tok([texts[i]], padding=True, return_tensors="pt")
            h = model.text_bert(single["input_ids"], single["attention_mask"])
            text_embs.append(F.normalize(model.text_proj(h[:, 0]), dim=-1))
        text_embs = torch.cat(text_embs)
        assert enc["input_ids"].shape[0] == len(texts)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            seqs = [[model.cls_token_id, *tokens[int(i)].tolist()] for i in index]
            width = max(map(len, seqs))
            ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
            mask = (torch.arange(width)[None, :] < torch.tensor([len(s) for s in seqs])[:, None]).long()
            hidden = model.cell_bert(input_ids=ids, attention_mask=mask).last_hidden_state
            cell_emb = F.normalize(model.cell_proj(hidden[:, 0]), dim=-1)
            sim = F.softmax(cell_emb @ text_embs.T / 0.05, dim=-1)
            ctm = torch.zeros_like(sim)
            for k, text in enumerate(texts):
                batch = tok(
                    [text] * len(index), padding=True, truncation=True, max_length=512, return_tensors="pt"
                )
                out = model.text_bert(
                    batch["input_ids"][:, None, :],
                    batch["attention_mask"][:, None, :],
                    encoder_hidden_states=hidden,
                    encoder_attention_mask=mask,
                )[:, 0]
                ctm[:, k] = F.softmax(model.ctm_head(out[:, 0]), dim=-1)[:, 1]
            ctm = F.softmax(ctm, dim=-1)
            sim_all[index] = sim.double().numpy()
            ctm_all[index] = ctm.double().numpy()
    return alpha * sim_all + (1 - alpha) * ctm_all, sim_all, ctm_all


@pytest.mark.parametrize("max_pairs", [512, 6])
def test_equals_the_original_per_class_loop(model, tokens, max_pairs):
    ours = langcell_zeroshot(
        model, tokens, TEXTS, alpha=0.3, batch_size=5, max_pairs=max_pairs, progress=False
    )
    probs, sim, ctm = original_procedure(model, tokens, TEXTS, batch_size=4, alpha=0.3)
    np.testing.assert_allclose(ours.sim_probs, sim, atol=ATOL)
    np.testing.assert_allclose(ours.ctm_probs, ctm, atol=ATOL)
    np.testing.assert_allclose(ours.probs, probs, atol=ATOL)
    np.testing.assert_allclose(ours.probs.sum(1), 1.0, atol=1e-9)
    assert not model.training


def test_without_ctm_is_the_similarity_softmax(model, tokens):
    fast = langcell_zeroshot(model, tokens, TEXTS, use_ctm=False, progress=False)
    full = langcell_zeroshot(model, tokens, TEXTS, progress=False)
    assert fast.ctm_probs is None
    assert fast.match_probs is None
    np.testing.assert_allclose(fast.probs, full.sim_probs, atol=1e-6)
    with torch.inference_mode():
        text_emb = model.encode_texts(TEXTS).numpy()
    logits = fast.cell_embeddings @ text_emb.T / 0.05
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(fast.probs, expected / expected.sum(1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_ctm_top_k_restricts_ctm_to_each_cells_most_similar_classes(model, tokens, top_k):
    full = langcell_zeroshot(model, tokens, TEXTS, alpha=0.3, batch_size=5, progress=False)
    part = langcell_zeroshot(model, tokens, TEXTS, alpha=0.3, batch_size=5, ctm_top_k=top_k, progress=False)
    np.testing.assert_allclose(part.sim_probs, full.sim_probs, atol=1e-7)
    # Reference: each cell's top_k classes by similarity, softmax of their full match probabilities.
    chosen = np.zeros_like(full.sim_probs, dtype=bool)
    best = np.argsort(-full.sim_probs, axis=1, kind="stable")[:, :top_k]
    np.put_along_axis(chosen, best, True, axis=1)
    logits = np.where(chosen, full.match_probs, -np.inf)
    ctm = np.exp(logits - logits.max(1, keepdims=True))
    ctm /= ctm.sum(1, keepdims=True)
    np.testing.assert_allclose(part.ctm_probs, ctm, atol=ATOL)
    np.testing.assert_allclose(part.probs, 0.3 * full.sim_probs + 0.7 * ctm, atol=ATOL)
    np.testing.assert_allclose(part.match_probs[chosen], full.match_probs[chosen], atol=ATOL)
    assert np.isnan(part.match_probs[~chosen]).all()
    assert chosen[np.arange(tokens.n_cells), part.probs.argmax(1)].all()
    # A cell's result does not depend on the cells sharing its batch.
    alone = langcell_zeroshot(model, tokens, TEXTS, alpha=0.3, batch_size=1, ctm_top_k=top_k, progress=False)
    np.testing.assert_allclose(alone.probs, part.probs, atol=ATOL)


def test_ctm_top_k_of_every_class_is_the_published_computation(model, tokens):
    full = langcell_zeroshot(model, tokens, TEXTS, progress=False)
    for top_k in (len(TEXTS), len(TEXTS) + 3):
        same = langcell_zeroshot(model, tokens, TEXTS, ctm_top_k=top_k, progress=False)
        np.testing.assert_allclose(same.probs, full.probs, atol=1e-7)
        assert not np.isnan(same.match_probs).any()


def test_class_groups_cover_every_class_once():
    groups = class_groups([30, 5, 6, 31, 50, 7, 5], max_classes=2)
    flat = np.concatenate(groups)
    assert sorted(flat.tolist()) == list(range(7))
    assert all(len(g) <= 2 for g in groups)


def test_dispatcher_writes_probabilities_and_the_checkpoint_hash(model, tokens):
    adata = ad.AnnData(
        np.zeros((tokens.n_cells, 1), dtype=np.float32),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(tokens.n_cells)]),
    )
    adata.obsm["langcell_tokens"] = tokens.to_sparse()
    texts = dict(zip(CLASSES, TEXTS, strict=True))
    se.tl.zeroshot_annotate(
        adata, texts, method="langcell", model=model, alpha=0.1, progress=False, key_added="lc"
    )
    expected = langcell_zeroshot(model, tokens, TEXTS, alpha=0.1, progress=False).probs
    np.testing.assert_allclose(adata.obsm["lc_probs"], expected, atol=1e-6)
    assert adata.obs["lc"].tolist() == [CLASSES[k] for k in expected.argmax(1)]
    uns = adata.uns["lc"]
    assert uns["method"] == "langcell"
    assert uns["checkpoint_hash"] == model.checkpoint_hash
    assert uns["params"]["alpha"] == 0.1
    assert uns["params"]["use_ctm"] is True
    assert uns["params"].get("ctm_top_k") is None  # None values are not written to uns
    assert uns["provenance"]["model"] == "LangCell"


def test_scorer_contract_and_checkpoint_folder(model, tokens, tmp_path):
    model.save(tmp_path / "saved")
    adata = ad.AnnData(np.zeros((tokens.n_cells, 1), dtype=np.float32))
    adata.obsm["langcell_tokens"] = tokens.to_sparse()
    probs, info = langcell_scores(adata, TEXTS, tmp_path / "saved", use_ctm=False, progress=False)
    assert probs.shape == (tokens.n_cells, len(TEXTS))
    # The hash names the weights, not the files: the saved copy has the same one.
    assert info["checkpoint_hash"] == model.checkpoint_hash
    assert info["provenance"]["checkpoint"] == str(tmp_path / "saved")
    assert info["params"]["use_ctm"] is False
    assert info["params"]["alpha"] is None


def test_checkpoint_hash_changes_with_the_weights(model):
    before = model.checkpoint_hash
    assert len(before) == 64
    assert before == model.checkpoint_hash
    saved = model.ctm_head.bias.detach().clone()
    with torch.no_grad():
        model.ctm_head.bias[0] += 1.0
    try:
        assert model.checkpoint_hash != before
    finally:
        with torch.no_grad():
            model.ctm_head.bias.copy_(saved)
    assert model.checkpoint_hash == before


def test_errors(model, tokens):
    with pytest.raises(ValueError, match="alpha"):
        langcell_zeroshot(model, tokens, TEXTS, alpha=1.5, progress=False)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="ctm_top_k"):
            langcell_zeroshot(model, tokens, TEXTS, ctm_top_k=bad, progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        langcell_zeroshot(model, tokens, ["cell type: t cell.", " "], progress=False)
    with pytest.raises(TypeError, match="LangCell"):
        langcell_scores(ad.AnnData(np.zeros((2, 1))), TEXTS, object())
    bare = LangCell.from_config(model.cell_bert.config, model.text_bert.config, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="no text tokenizer"):
        langcell_zeroshot(bare, tokens, TEXTS, progress=False)
