"""``se.tl.langcell_encode``: length-sorted, dynamically padded encoding equals the straightforward one."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from _langcell_fixtures import ref_cell_bert, ref_project, write_checkpoint

import scelmo as se
from scelmo.cell_tokens import CellTokens
from scelmo.models import LangCell
from scelmo.models.langcell import encode_cell_tokens

ATOL = 1e-5
CLS = 25426


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("langcell") / "ckpt", seed=1)


@pytest.fixture(scope="module")
def model(checkpoint) -> LangCell:
    return LangCell.from_pretrained(checkpoint.path)


@pytest.fixture(scope="module")
def random_tokens() -> CellTokens:
    """60 cells of very different lengths (0 to 400 genes), token ids of real genes (2..25425)."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 400, size=60)
    lengths[:3] = [0, 1, 399]
    tokens = [rng.choice(np.arange(2, 25426), size=n, replace=False) for n in lengths]
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return CellTokens(indptr, np.concatenate(tokens).astype(np.int16))


@pytest.fixture(scope="module")
def pbmc(_session_data_dir) -> ad.AnnData:
    if not (_session_data_dir / "geneformer_v1").is_dir():
        pytest.skip("needs the real Geneformer V1 dictionaries (shared data folder absent)")
    pbmc = sc.datasets.pbmc68k_reduced()
    counts = sp.csr_matrix(np.rint(np.expm1(pbmc.raw.X.toarray())).astype(np.float32))
    adata = ad.AnnData(
        counts, obs=pbmc.obs[["bulk_labels"]].copy(), var=pd.DataFrame(index=pbmc.raw.var_names)
    )
    se.pp.tokenize(adata)
    return adata


def test_embeddings_follow_the_equations(model, checkpoint, random_tokens):
    emb, cls = encode_cell_tokens(model, random_tokens, batch_size=16, store_cls=True, progress=False)
    assert emb.dtype == np.float32
    assert emb.shape == (60, 256)
    assert cls.shape == (60, 32)
    for i in [0, 1, 2, 10, 33]:
        ref = ref_cell_bert(checkpoint.cell_bert, [CLS, *random_tokens[i].tolist()])
        np.testing.assert_allclose(cls[i], ref[0].numpy(), atol=ATOL)
        np.testing.assert_allclose(
            emb[i], ref_project(ref[0], checkpoint.heads["cell_proj"]).numpy(), atol=ATOL
        )


def test_an_embedding_does_not_depend_on_its_batch(model, random_tokens):
    few = np.array([0, 1, 2, 5, 17, 30, 41, 59])  # empty, 1 gene, the longest, and others
    alone = np.concatenate(
        [encode_cell_tokens(model, random_tokens.subset([i]), progress=False)[0] for i in few]
    )
    for batch_size, max_tokens in ((7, None), (64, 1000), (64, None)):
        many, _ = encode_cell_tokens(
            model, random_tokens, batch_size=batch_size, max_tokens=max_tokens, progress=False
        )
        np.testing.assert_allclose(many[few], alone, atol=ATOL)
    order = np.random.default_rng(1).permutation(random_tokens.n_cells)
    permuted, _ = encode_cell_tokens(model, random_tokens.subset(order), batch_size=7, progress=False)
    np.testing.assert_allclose(permuted, many[order], atol=ATOL)


def test_sorted_batches_equal_the_original_procedure(checkpoint, model, random_tokens):
    """The original: shuffled batches of 32, padded to the longest in the batch, eager attention, fp32."""
    eager = LangCell.from_pretrained(checkpoint.path, attn_implementation="eager")
    order = np.random.default_rng(2).permutation(random_tokens.n_cells)
    original = np.zeros((random_tokens.n_cells, 256), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            seqs = [[CLS, *random_tokens[i].tolist()][:2048] for i in batch]
            width = max(map(len, seqs))
            ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
            cls_state = eager.cell_bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
            original[batch] = torch.nn.functional.normalize(eager.cell_proj(cls_state), dim=-1).numpy()
    fast, _ = encode_cell_tokens(model, random_tokens, batch_size=32, progress=False)
    np.testing.assert_allclose(fast, original, atol=ATOL)


def test_cls_is_prepended_and_the_total_cut_to_2048(model):
    long = np.arange(2, 2102, dtype=np.int16)  # 2100 genes
    tokens = CellTokens(np.array([0, 2100, 2100]), long, max_length=2100)
    emb, _ = encode_cell_tokens(model, tokens, progress=False)
    with torch.inference_mode():
        expected, _ = model.encode_cells(torch.tensor([[CLS, *long[:2047].tolist()]]))
        only_cls, _ = model.encode_cells(torch.tensor([[CLS]]))
    np.testing.assert_allclose(emb[0], expected[0], atol=ATOL)
    np.testing.assert_allclose(emb[1], only_cls[0], atol=ATOL)  # an empty cell is its <cls> alone


def test_langcell_encode_writes_obsm_and_uns(model, checkpoint, pbmc):
    adata = pbmc[:90].copy()
    se.tl.langcell_encode(adata, model, batch_size=64, store_cls=True, progress=False)
    emb = adata.obsm["X_langcell"]
    assert emb.shape == (90, 256)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert adata.obsm["X_langcell_cls"].shape == (90, 32)
    assert adata.uns["X_langcell"]["params"]["tokens_key"] == "langcell_tokens"
    # Same cells, tokenized on the fly and the model given as a path.
    fresh = pbmc[:90].copy()
    del fresh.obsm["langcell_tokens"]
    out = se.tl.langcell_encode(fresh, checkpoint.path, key_added="emb", progress=False, copy=True)
    assert "langcell_tokens" in out.obsm
    assert "emb" not in fresh.obsm
    np.testing.assert_allclose(out.obsm["emb"], emb, atol=ATOL)
    # A subset of the AnnData carries its tokens along.
    sub = adata[::3].copy()
    se.tl.langcell_encode(sub, model, key_added="sub", device="cpu", progress=False)
    np.testing.assert_allclose(sub.obsm["sub"], emb[::3], atol=ATOL)


def test_bf16_autocast_runs(model, random_tokens):
    fp32, _ = encode_cell_tokens(model, random_tokens[:8], progress=False)
    bf16, _ = encode_cell_tokens(model, random_tokens[:8], dtype="bf16", progress=False)
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - fp32).max() < 0.1
    with pytest.raises(ValueError, match="Unknown dtype"):
        encode_cell_tokens(model, random_tokens[:2], dtype="int8", progress=False)


def test_errors(model):
    adata = ad.AnnData(np.ones((2, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="LangCell or a checkpoint path"):
        se.tl.langcell_encode(adata, object())
    adata.obsm["langcell_tokens"] = np.ones((2, 3))
    with pytest.raises(TypeError, match="not the sparse token matrix"):
        se.tl.langcell_encode(adata, model, progress=False)


@pytest.mark.parametrize("position_embedding_type", ["absolute", "relative_key"])
def test_cls_only_last_layer_equals_the_full_pass(position_embedding_type):
    """The <cls>-only last layer is exact; configurations it cannot shortcut take the full pass."""
    import transformers

    from scelmo.models.langcell import cls_hidden_state

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act="relu",
        position_embedding_type=position_embedding_type,
    )
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    ids = torch.randint(2, 50, (5, 9))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[3, 1:] = 0
    ids[mask == 0] = 0
    with torch.inference_mode():
        full = bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        fast = cls_hidden_state(bert, ids, mask)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=1e-5)
    assert len(bert.encoder.layer) == 3  # the model is left as it was


def test_batches_respect_the_position_budget(model, random_tokens):
    from scelmo.models.langcell import cell_batches

    lengths = np.minimum(random_tokens.lengths + 1, 2048)
    seen = []
    for index, ids, _ in cell_batches(
        random_tokens, batch_size=16, cls_token_id=CLS, max_length=2048, max_tokens=1000
    ):
        assert ids.shape == (len(index), lengths[index].max())
        # as many cells as fit the budget at the batch's (first, longest) length, at most 16
        width = ids.shape[1]
        fits = max(1, min(1000 // width, 1000 * 1024 // width**2))
        assert len(index) == min(16, fits, random_tokens.n_cells - len(seen))
        seen.extend(index.tolist())
    assert sorted(seen) == list(range(random_tokens.n_cells))
    with pytest.raises(ValueError, match="max_tokens"):
        encode_cell_tokens(model, random_tokens, max_tokens=0)


def test_auto_dtype_is_bf16_where_native_and_close_to_float32(model, random_tokens):
    from scelmo.models.langcell._encode import native_bf16, resolve_dtype

    expected = torch.bfloat16 if native_bf16("cpu") else None
    assert resolve_dtype("auto", "cpu") is expected
    assert resolve_dtype("auto", "meta") is None  # no hardware: float32
    full, _ = encode_cell_tokens(model, random_tokens, progress=False)
    auto, _ = encode_cell_tokens(model, random_tokens, dtype="auto", progress=False)
    cosine = np.sum(full * auto, axis=1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(auto, axis=1))
    assert cosine.min() > 0.99
    adata = ad.AnnData(np.zeros((random_tokens.n_cells, 1), dtype=np.float32))
    adata.obsm["langcell_tokens"] = random_tokens.to_sparse()
    se.tl.langcell_encode(adata, model, dtype="auto", progress=False)
    assert adata.uns["X_langcell"]["params"]["dtype"] == ("bfloat16" if expected is not None else "float32")
