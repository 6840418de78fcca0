"""``tl.explain_annotation``: elmo terms against an independent computation, kNN voters against a
brute-force search, LangCell's gradient x input against finite differences; refusals; the plot."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

sys.path.insert(0, str(Path(__file__).parent))
from _pbmc_annotation import MARKERS, BagOfWords, symbol_table

import scelmo as se
from scelmo.annotation._explain import select_cells


@pytest.fixture(scope="module")
def pbmc():
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="module")
def table(pbmc):
    return symbol_table(pbmc.raw.var_names)


def _annotate(adata, table, **options):
    options = {"unspell": False, "cache": False, **options}
    se.tl.zeroshot_annotate(adata, MARKERS, gene_embeddings=table, encoder=BagOfWords(), **options)


@pytest.fixture(scope="module")
def annotated(pbmc, table):
    adata = pbmc.copy()
    _annotate(adata, table)  # refinement, rematching and abstention as by default
    return adata


def _explain(adata, table, **kwargs):
    return se.tl.explain_annotation(adata, gene_embeddings=table, encoder=BagOfWords(), **kwargs)


# --- elmo ----------------------------------------------------------------------------------


def test_elmo_terms_sum_to_the_score_and_give_the_recorded_probabilities(annotated, table):
    cells = annotated.obs_names[:40]
    frame = _explain(annotated, table, cells=cells, classes="all", n_top=None)
    assert set(frame.columns) >= {"cell", "label", "class", "kind", "feature", "contribution", "rank"}
    assert (frame["kind"] == "gene").all()
    per = frame.groupby(["cell", "class"], sort=False).agg(
        total=("contribution", "sum"), score=("score", "first")
    )
    np.testing.assert_allclose(per["total"], per["score"], rtol=0, atol=1e-12)
    scores = per["score"].unstack()[list(MARKERS)].loc[list(cells)].to_numpy()
    temperature = annotated.uns["zeroshot"]["params"]["temperature"]
    absent = set(annotated.uns["zeroshot"].get("absent", []))
    scores[:, [c in absent for c in MARKERS]] = -np.inf
    probs = np.exp(scores / temperature - np.max(scores / temperature, axis=1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    np.testing.assert_allclose(probs, annotated.obsm["zeroshot_probs"][:40], atol=1e-5)
    # default: one class per cell, its label, ten genes ranked by contribution
    default = _explain(annotated, table, cells=cells[:3])
    best = np.array(list(MARKERS))[annotated.obsm["zeroshot_probs"][:3].argmax(1)]
    # a cell's label, or for a cell that abstained ("unknown") its best class
    expected = default["label"].where(
        default["label"] != "unknown", default["cell"].map(dict(zip(cells[:3], best, strict=True)))
    )
    assert (default["class"] == expected).all()
    assert default.groupby("cell")["rank"].max().eq(10).all()
    assert default.groupby("cell")["contribution"].apply(lambda s: s.is_monotonic_decreasing).all()


def _written_out(adata, table):
    """The genes, each class's 5-gene signature (the genes whose symbol's vector is closest to the
    class text, contrasted), and the standardised expression, computed densely."""
    encoder = BagOfWords()
    genes = list(adata.raw.var_names)
    vectors = encoder.encode(list(MARKERS.values())).astype(np.float64)
    rows = np.asarray(table[genes], dtype=np.float64)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    sim = rows @ (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).T
    sim -= sim.mean(1, keepdims=True)
    signatures = [np.argsort(-sim[:, k], kind="stable")[:5] for k in range(len(MARKERS))]
    x = adata.raw.X.toarray().astype(np.float64)
    sd = x.std(0)
    return genes, signatures, (x - x.mean(0)) / np.where(sd > 1e-8, sd, 1)


def test_elmo_terms_equal_an_independent_dense_computation(pbmc, table):
    adata = pbmc.copy()
    _annotate(adata, table, refine=0, n_genes=5, gene_mentions=False, abstain=False, smooth=0)
    frame = _explain(adata, table, cells=adata.obs_names[:10], classes="all", n_top=None)
    genes, signatures, z = _written_out(adata, table)
    for k, cls in enumerate(MARKERS):
        chosen = signatures[k]
        score_sd = (z[:, chosen].sum(1) / 5).std()
        for i, cell in enumerate(adata.obs_names[:10]):
            mine = frame[(frame["cell"] == cell) & (frame["class"] == cls)].set_index("feature")[
                "contribution"
            ]
            expected = pd.Series(z[i, chosen] / 5 / score_sd, index=np.asarray(genes)[chosen])
            assert set(mine.index) == set(expected.index)
            np.testing.assert_allclose(mine[expected.index], expected, rtol=1e-6, atol=1e-9)


def test_smoothed_terms_equal_an_independent_dense_computation(pbmc, table):
    """With ``smooth``, a cell's term for a gene reads that gene averaged over the cells its smoothed
    score comes from: ``((I + W) / 2) ** rounds`` with ``W`` the row-normalised ``obsp`` graph."""
    adata = pbmc.copy()
    rounds = 2
    _annotate(adata, table, refine=0, n_genes=5, gene_mentions=False, abstain=False, smooth=rounds)
    assert adata.uns["zeroshot"]["smoothed_on"] == "obsp['connectivities']"
    cells = adata.obs_names[:6]
    frame = _explain(adata, table, cells=cells, classes="all", n_top=None)
    graph = adata.obsp["connectivities"].toarray().astype(np.float64)
    np.fill_diagonal(graph, 0.0)
    graph /= graph.sum(1, keepdims=True)
    step = (np.eye(len(graph)) + graph) / 2
    operator = np.linalg.matrix_power(step, rounds)
    genes, signatures, z = _written_out(adata, table)
    z = operator @ z
    for k, cls in enumerate(MARKERS):
        chosen = signatures[k]
        score_sd = (z[:, chosen].sum(1) / 5).std()
        for i, cell in enumerate(cells):
            mine = frame[(frame["cell"] == cell) & (frame["class"] == cls)].set_index("feature")[
                "contribution"
            ]
            expected = pd.Series(
                (z[i, chosen] - z[:, chosen].mean(0)) / 5 / score_sd, index=np.asarray(genes)[chosen]
            )
            np.testing.assert_allclose(mine[expected.index], expected, rtol=1e-6, atol=1e-9)


def test_elmo_top_genes_matter_more_than_random_expressed_genes(pbmc, table):
    """Faithfulness: zeroing a cell's top-10 genes and annotating again lowers its score more than 10 random genes
    (without smoothing: with it, a cell's score also reads its neighbours, which are left as they were)."""
    base = pbmc.copy()
    _annotate(base, table, abstain=False, smooth=0)
    rng = np.random.default_rng(0)
    x = base.raw.X.toarray()
    drops_top, drops_random = [], []
    for row in (0, 1):
        cell = base.obs_names[row]
        frame = _explain(base, table, cells=[cell])
        cls, score = frame["class"].iloc[0], frame["score"].iloc[0]
        genes = base.raw.var_names
        top = genes.get_indexer(frame["feature"])
        expressed = np.setdiff1d(np.flatnonzero(x[row] > 0), top)
        for removed, drops in ((top, drops_top), (rng.choice(expressed, 10, replace=False), drops_random)):
            changed = x.copy()
            changed[row, removed] = 0
            other = ad.AnnData(base.X, obs=base.obs, var=base.var)
            other.raw = ad.AnnData(changed, var=base.raw.var)
            _annotate(other, table, abstain=False, smooth=0)
            after = _explain(other, table, cells=[cell], classes=cls, n_top=1)["score"].iloc[0]
            drops.append(score - after)
    assert min(drops_top) > max(drops_random)


@pytest.mark.parametrize("scale", [False, True])
def test_elmo_cell_space_terms_decompose_the_cosine(pbmc, table, scale):
    adata = pbmc.copy()
    se.tl.elmo_embed(adata, table, progress=False)
    _annotate(adata, table, score="cell", scale=scale)
    cells = adata.obs_names[:15]
    frame = _explain(adata, table, cells=cells, classes="all", n_top=None)
    per = frame.groupby(["cell", "class"], sort=False).agg(
        total=("contribution", "sum"), score=("score", "first")
    )
    np.testing.assert_allclose(per["total"], per["score"], atol=1e-5)  # obsm holds float32
    # written out densely: wa weights, centred over cells, along the class text, over |u_c|
    x = adata.raw.X.toarray().astype(np.float64)
    a = x / x.sum(1, keepdims=True)
    e = np.asarray(table[list(adata.raw.var_names)], dtype=np.float64)
    u = (a - a.mean(0)) @ e
    v = BagOfWords().encode(list(MARKERS.values())).astype(np.float64)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cosines = (u @ v.T) / np.linalg.norm(u, axis=1, keepdims=True)
    np.testing.assert_allclose(
        per["score"].unstack()[list(MARKERS)].loc[list(cells)],
        ((cosines - cosines.mean(0)) / cosines.std(0) if scale else cosines)[:15],
        atol=1e-5,
    )
    if not scale:
        k = list(MARKERS).index("T cell")
        terms = (a[3] - a.mean(0)) * (e @ v[k]) / np.linalg.norm(u[3])
        mine = frame[(frame["cell"] == cells[3]) & (frame["class"] == "T cell")].set_index("feature")
        np.testing.assert_allclose(
            mine["contribution"], pd.Series(terms, index=adata.raw.var_names)[mine.index], atol=1e-6
        )
    adata.obsm["X_elmo"] = adata.obsm["X_elmo"][::-1].copy()
    with pytest.raises(ValueError, match="do not give the probabilities"):
        _explain(adata, table, cells=cells[:2])
    _annotate(adata, table, score="cell", scale=scale)  # annotated on embeddings of other cells
    with pytest.raises(ValueError, match="gene-weighted average"):
        _explain(adata, table, cells=cells[:2])


def test_elmo_refuses_other_inputs(annotated, table, pbmc):
    other = se.pp.build_gene_embeddings(
        list(pbmc.raw.var_names)[:400],
        source={g: g for g in pbmc.raw.var_names},
        encoder=BagOfWords(),
        cache=False,
        progress=False,
    )
    with pytest.raises(ValueError, match="content hash"):
        _explain(annotated, other, cells=annotated.obs_names[:2])
    with pytest.raises(TypeError, match="needs gene_embeddings="):
        se.tl.explain_annotation(annotated, cells=annotated.obs_names[:2])
    changed = annotated.copy()
    raw = changed.raw.X.toarray()
    changed.raw = ad.AnnData(raw[::-1].copy(), var=changed.raw.var)  # the same genes, other cells' values
    with pytest.raises(ValueError, match="do not give the probabilities"):
        _explain(changed, table, cells=changed.obs_names[:5])
    with pytest.raises(ValueError, match="not classes of"):
        _explain(annotated, table, cells=annotated.obs_names[:1], classes="platelet")
    with pytest.raises(KeyError, match="run scelmo"):
        se.tl.explain_annotation(annotated, "nothing")


def test_select_cells(annotated):
    assert select_cells(annotated, None).size == annotated.n_obs
    names = annotated.obs_names[[5, 2]]
    assert select_cells(annotated, list(names)).tolist() == [5, 2]
    assert select_cells(annotated, names[0]).tolist() == [5]
    mask = (annotated.obs["bulk_labels"] == "CD19+ B").to_numpy()
    assert select_cells(annotated, mask).tolist() == np.flatnonzero(mask).tolist()
    assert select_cells(annotated, {"bulk_labels": "CD19+ B"}).tolist() == np.flatnonzero(mask).tolist()
    with pytest.raises(KeyError, match=r"not in adata\.obs_names"):
        select_cells(annotated, ["nope"])
    with pytest.raises(KeyError, match=r"obs\[.missing.\]"):
        select_cells(annotated, {"missing": "x"})


# --- kNN -----------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_lists_the_neighbours_that_voted(pbmc, weights):
    reference, query = pbmc[:500].copy(), pbmc[500:].copy()
    se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca", weights=weights, k=7)
    frame = se.tl.explain_annotation(
        query, "knn", cells=query.obs_names[:30], classes="all", reference=reference, n_top=None
    )
    assert (frame["kind"] == "reference_cell").all()
    # the neighbours of a brute-force cosine search
    ref = reference.obsm["X_pca"] / np.linalg.norm(reference.obsm["X_pca"], axis=1, keepdims=True)
    q = query.obsm["X_pca"][:30] / np.linalg.norm(query.obsm["X_pca"][:30], axis=1, keepdims=True)
    nearest = np.argsort(-(q @ ref.T), axis=1)[:, :7]
    classes = query.uns["knn"]["classes"]
    for i, cell in enumerate(query.obs_names[:30]):
        mine = frame[frame["cell"] == cell]
        assert set(mine["feature"]) == set(reference.obs_names[nearest[i]])
        assert (
            mine["class"].to_numpy()
            == reference.obs.loc[mine["feature"], "bulk_labels"].astype(str).to_numpy()
        ).all()
        shares = mine.groupby("class")["contribution"].sum()
        np.testing.assert_allclose(
            shares, query.obsm["knn_probs"][i][[classes.index(c) for c in shares.index]], atol=1e-6
        )
        np.testing.assert_allclose(
            mine["distance"], 1 - (q[i] @ ref[reference.obs_names.get_indexer(mine["feature"])].T), atol=1e-5
        )


def test_knn_cross_validated_and_refusals(pbmc):
    adata = pbmc.copy()
    se.tl.knn_annotate(adata, None, "bulk_labels", use_rep="X_pca", k=5)
    frame = se.tl.explain_annotation(adata, "knn", cells=adata.obs_names[:20], classes="all", n_top=None)
    assert frame.groupby("cell").size().eq(5).all()
    assert not (frame["cell"] == frame["feature"]).any()  # out of fold: no cell votes for itself
    np.testing.assert_allclose(frame.groupby("cell", sort=False)["contribution"].sum(), 1.0)
    with pytest.raises(ValueError, match="pass reference=None"):
        se.tl.explain_annotation(adata, "knn", cells=adata.obs_names[:2], reference=adata)
    reference, query = pbmc[:500].copy(), pbmc[500:].copy()
    se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca")
    with pytest.raises(ValueError, match="pass the same reference"):
        se.tl.explain_annotation(query, "knn", cells=query.obs_names[:2])
    with pytest.raises(ValueError, match="was computed with 500"):
        se.tl.explain_annotation(query, "knn", cells=query.obs_names[:2], reference=reference[:400].copy())


# --- LangCell ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def langcell(tmp_path_factory):
    pytest.importorskip("torch")
    from _langcell_fixtures import write_checkpoint

    from scelmo.models import LangCell

    return LangCell.from_pretrained(
        write_checkpoint(tmp_path_factory.mktemp("lc") / "ckpt", seed=3, with_vocab=True).path
    )


TEXTS = {
    "T cell": "cell type: t lymphocyte. a cell of the immune system that express cd4 or cd8",
    "B cell": "cell type: b lymphocyte.",
    "monocyte": "cell type: monocyte. a blood cell, cd14 +",
}


def _tokens(n_cells=4, seed=1):
    from scelmo.cell_tokens import CellTokens

    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 40, size=n_cells)
    seqs = [rng.choice(np.arange(2, 25426), size=n, replace=False) for n in lengths]
    return CellTokens(np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(seqs).astype(np.int16))


def test_langcell_gradient_x_input_is_the_derivative_along_each_tokens_scaling(langcell):
    import torch

    from scelmo.models.langcell._explain import class_probabilities, token_attributions

    model = copy.deepcopy(langcell).double()
    tokens = _tokens(2)
    found = token_attributions(model, tokens, list(TEXTS.values()), [[0, 2], [1]], alpha=0.1)
    text_inputs = model.tokenize_texts(list(TEXTS.values()))
    with torch.no_grad():
        text_emb = model.encode_texts(text_inputs)
        for cell, attribution in enumerate(found):
            ids, mask = tokens.pad([cell], prefix=model.cls_token_id)
            base = model.cell_bert.embeddings.word_embeddings(torch.from_numpy(ids))
            mask_t = torch.from_numpy(mask)
            h = 1e-5
            for r in range(0, ids.shape[1] - 1, 4):
                scaled = []
                for t in (1 + h, 1 - h):
                    e = base.clone()
                    e[0, r + 1] *= t
                    scaled.append(class_probabilities(model, e, mask_t, text_inputs, text_emb, alpha=0.1)[0])
                numeric = ((scaled[0] - scaled[1]) / (2 * h)).numpy()
                for j, k in enumerate(attribution.classes):
                    np.testing.assert_allclose(
                        attribution.contributions[j, r], numeric[k], rtol=1e-4, atol=1e-9
                    )


def test_langcell_explanation_in_adata_and_refusals(langcell, tmp_path):
    from _langcell_fixtures import write_checkpoint

    from scelmo.models import LangCell

    tokens = _tokens(4)
    adata = ad.AnnData(
        np.zeros((4, 1), dtype=np.float32), obs=pd.DataFrame(index=[f"c{i}" for i in range(4)])
    )
    adata.obsm["langcell_tokens"] = tokens.to_sparse()
    se.tl.zeroshot_annotate(
        adata, TEXTS, method="langcell", model=langcell, alpha=0.1, progress=False, key_added="lc"
    )
    frame = se.tl.explain_annotation(adata, "lc", model=langcell, n_top=5)
    assert frame.groupby("cell").size().le(5).all()
    assert (frame["class"] == frame["label"]).all()
    assert frame["feature"].str.startswith("token ").all()
    first = tokens[0]
    listed = frame[frame["cell"] == "c0"]["feature"].str.removeprefix("token ").astype(int)
    assert set(listed) <= set(first.tolist())
    np.testing.assert_allclose(
        frame.groupby("cell")["score"].first(), adata.obs["lc_score"].loc[frame["cell"].unique()], atol=1e-5
    )
    other = LangCell.from_pretrained(write_checkpoint(tmp_path / "other", seed=4, with_vocab=True).path)
    with pytest.raises(ValueError, match="checkpoint"):
        se.tl.explain_annotation(adata, "lc", model=other)
    with pytest.raises(ValueError, match="needs model="):
        se.tl.explain_annotation(adata, "lc")


def test_langcell_tokens_are_named_by_the_genes_they_came_from(langcell):
    rng = np.random.default_rng(2)
    ids = [f"ENSG{i:011d}" for i in range(40)]
    vocab = {"token_ids": {g: 100 + i for i, g in enumerate(ids)}, "gene_medians": dict.fromkeys(ids, 1.0)}
    counts = rng.poisson(2.0, size=(3, 40)).astype(np.float32)
    adata = ad.AnnData(counts, var=pd.DataFrame({"symbol": [f"G{i}" for i in range(40)]}, index=ids))
    adata.obs_names = ["a", "b", "c"]
    se.pp.tokenize(adata, dictionaries=vocab, hgnc_fallback=False)
    se.tl.zeroshot_annotate(adata, TEXTS, method="langcell", model=langcell, progress=False, key_added="lc")
    frame = se.tl.explain_annotation(adata, "lc", model=langcell, dictionaries=vocab, n_top=None)
    for cell, row in zip(adata.obs_names, counts, strict=True):
        assert set(frame.loc[frame["cell"] == cell, "feature"]) == {ids[j] for j in np.flatnonzero(row)}
    # without the dictionaries tokenize was given, the tokens keep their ids
    unnamed = se.tl.explain_annotation(adata, "lc", model=langcell, cells="a", n_top=3)
    assert unnamed["feature"].str.startswith("token ").all()


# --- plot ----------------------------------------------------------------------------------


def test_plot_shows_the_top_features_per_class(pbmc):
    import matplotlib

    matplotlib.use("Agg")
    reference, query = pbmc[:500].copy(), pbmc[500:].copy()
    se.tl.knn_annotate(query, reference, "bulk_labels", use_rep="X_pca")
    frame = se.tl.explain_annotation(query, "knn", cells={"bulk_labels": "CD19+ B"}, reference=reference)
    ax = se.pl.explanation(frame, n_top=3)
    shown = [t.get_text() for t in ax.get_yticklabels()]
    mean = (
        frame.groupby(["class", "feature"])["contribution"].sum() / frame.groupby("class")["cell"].nunique()
    )
    assert len(shown) <= 3 * frame["class"].nunique()
    for cls in frame["class"].unique():
        third = mean[cls].nlargest(3).iloc[-1]
        assert set(mean[cls][mean[cls] > third].index) <= set(shown)  # ties at the third may go either way
        assert mean[cls].index.isin(shown).sum() >= min(3, len(mean[cls]))
    with pytest.raises(ValueError, match="empty"):
        se.pl.explanation(frame.iloc[:0])
    with pytest.raises(KeyError, match="columns"):
        se.pl.explanation(frame.drop(columns="feature"))
