"""``tl.score_text``: free-text queries scored per cell, each method against an independent computation."""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

sys.path.insert(0, str(Path(__file__).parent))
from _pbmc_annotation import BagOfWords, symbol_table

import scelmo as se


@pytest.fixture(scope="module")
def pbmc():
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="module")
def table(pbmc):
    """A gene table whose 'text' is the gene symbol, embedded by the stand-in encoder."""
    return symbol_table(pbmc.raw.var_names)


def test_elmo_scores_are_the_mean_z_score_of_the_genes_the_text_names(pbmc, table):
    adata = pbmc.copy()
    queries = {"B": "CD79A CD79B MS4A1", "NK": "GNLY NKG7"}
    se.tl.score_text(adata, queries, gene_embeddings=table, encoder=BagOfWords(), n_genes=3, cache=False)
    genes = adata.uns["text_score"]["genes"]
    assert set(genes["CD79A CD79B MS4A1"]) == {"CD79A", "CD79B", "MS4A1"}
    assert set(genes["GNLY NKG7"][:2]) == {"GNLY", "NKG7"}
    x = adata.raw.X.toarray().astype(np.float64)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    names = list(adata.raw.var_names)
    for name, text in queries.items():
        expected = z[:, [names.index(g) for g in genes[text]]].mean(axis=1)
        np.testing.assert_allclose(adata.obs[f"text_score_{name}"], expected, rtol=1e-5, atol=1e-5)
    means = adata.obs.groupby("bulk_labels", observed=True)["text_score_B"].mean()
    assert means.idxmax() == "CD19+ B"
    assert adata.uns["text_score"]["queries"] == {
        "text_score_B": queries["B"],
        "text_score_NK": queries["NK"],
    }


def test_genept_s_scores_are_cosines_to_the_query(pbmc):
    adata = pbmc.copy()
    se.tl.cell_sentence_embed(adata, encoder=BagOfWords(), n_genes=20, cache=False, progress=False)
    query = "CD79A CD79B MS4A1"
    se.tl.score_text(adata, [query], method="genept_s", encoder=BagOfWords(), cache=False)
    cells = adata.obsm["X_genept_s"] / np.linalg.norm(adata.obsm["X_genept_s"], axis=1, keepdims=True)
    vector = BagOfWords().encode([query])[0].astype(np.float64)
    np.testing.assert_allclose(
        adata.obs[f"text_score_{query}"], cells @ (vector / np.linalg.norm(vector)), atol=1e-5
    )


def test_langcell_scores_are_the_model_cell_text_similarity(pbmc, tmp_path):
    torch = pytest.importorskip("torch")
    from _langcell_fixtures import write_checkpoint

    from scelmo.cell_tokens import CellTokens
    from scelmo.models import LangCell

    model = LangCell.from_pretrained(write_checkpoint(tmp_path / "ckpt", seed=3, with_vocab=True).path)
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=12)
    tokens = CellTokens(
        np.concatenate([[0], np.cumsum(lengths)]),
        np.concatenate([rng.choice(np.arange(2, 25426), size=n, replace=False) for n in lengths]).astype(
            np.int16
        ),
    )
    adata = ad.AnnData(np.zeros((12, 1), dtype=np.float32))
    adata.obsm["langcell_tokens"] = tokens.to_sparse()
    se.tl.langcell_encode(adata, model, progress=False)
    texts = ["cell type: t cell.", "cell type: b cell."]
    se.tl.score_text(adata, texts, method="langcell", model=model)
    with torch.inference_mode():
        expected = adata.obsm["X_langcell"] @ model.encode_texts(texts).numpy().T
    for k, text in enumerate(texts):
        np.testing.assert_allclose(adata.obs[f"text_score_{text}"], expected[:, k], atol=1e-5)


def test_errors_say_what_to_do(pbmc, table):
    adata = pbmc.copy()
    with pytest.raises(ValueError, match="needs gene_embeddings="):
        se.tl.score_text(adata, "B cells")
    with pytest.raises(KeyError, match="cell_sentence_embed"):
        se.tl.score_text(adata, "B cells", method="genept_s")
    with pytest.raises(ValueError, match="non-empty"):
        se.tl.score_text(adata, [" "], gene_embeddings=table, encoder=BagOfWords())
    with pytest.raises(ValueError, match="cannot be stored"):
        se.tl.score_text(adata, "B", gene_embeddings=table, key_added="a/b")


def test_plot_has_one_panel_per_query(pbmc, table, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    adata = pbmc.copy()
    se.tl.score_text(
        adata, ["CD79A", "NKG7"], gene_embeddings=table, encoder=BagOfWords(), n_genes=1, cache=False
    )
    fig = se.pl.text_scores(adata, save=tmp_path / "scores.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["CD79A", "NKG7"]
    assert (tmp_path / "scores.png").stat().st_size > 0
    with pytest.raises(KeyError, match=r"run scelmo\.tl\.score_text"):
        se.pl.text_scores(adata, key="other")
