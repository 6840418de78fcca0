"""NCBI gene summaries through the real ``mygene`` client, against a local mygene.info."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest

pytest.importorskip("mygene")

from _servers import MyGeneService, gene_hit

import scelmo as se
from scelmo.text import ServiceError, TextCache
from scelmo.text.sources import ncbi_descriptions

FAST = {"backoff": 0.001, "max_backoff": 0.01, "request_delay": 0.0}
CD3E_SUMMARY = (
    "The protein encoded by this gene is the CD3-epsilon polypeptide of the T-cell receptor complex."
)

GENES = {
    "CD3E": [
        gene_hit(916, "CD3E", "CD3 epsilon subunit of T-cell receptor complex", CD3E_SUMMARY, score=88.0)
    ],
    "MS4A1": [gene_hit(931, "MS4A1", "membrane spanning 4-domains A1", "B-lymphocyte surface molecule.")],
    "NOSUMMARY": [gene_hit(1000001, "NOSUMMARY", "a gene without summary", None)],
    # A term that hits two genes: the alias match scores higher, the exact symbol wins.
    "DUP1": [
        gene_hit(2002, "OTHER", "gene using DUP1 as an alias", "Alias summary.", score=50.0),
        gene_hit(2001, "DUP1", "the real DUP1", "Exact symbol summary.", score=30.0),
    ],
    "HBB": [gene_hit(3043, "HBB", "hemoglobin subunit beta", "Oxygen transport in red blood cells.")],
}


@pytest.fixture
def mygene_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MyGeneService]:
    monkeypatch.setenv("SCELMO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with MyGeneService(GENES) as server:
        yield server


def test_summaries_notfound_and_duplicate_hits(mygene_service: MyGeneService, tmp_path: Path) -> None:
    texts, provenance = ncbi_descriptions(
        ["CD3E", "UNKNOWN", "NOSUMMARY", "DUP1"], cache=TextCache(tmp_path), url=mygene_service.url, **FAST
    )
    assert texts == {
        "CD3E": CD3E_SUMMARY,
        "UNKNOWN": None,
        "NOSUMMARY": None,
        "DUP1": "Exact symbol summary.",
    }
    (request,) = mygene_service.requests
    form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
    # What the real client sends: quoted, comma-joined terms and the query options as form fields.
    assert form == {
        "q": '"CD3E","UNKNOWN","NOSUMMARY","DUP1"',
        "scopes": "symbol",
        "fields": "symbol,name,summary,entrezgene",
        "species": "human",
    }
    assert request.path == "/v3/query/"
    assert request.method == "POST"
    assert provenance["url"] == mygene_service.url
    assert provenance["species"] == "human"


def test_batches_and_cached_rerun(mygene_service: MyGeneService, tmp_path: Path) -> None:
    genes = ["CD3E", "MS4A1", "HBB", "UNKNOWN", "DUP1"]
    with pytest.warns(UserWarning, match=r"1 of 5 genes have no text from source 'ncbi' \(e\.g\. UNKNOWN\)"):
        series = se.pp.gene_descriptions(
            genes,
            source="ncbi",
            cache_dir=tmp_path,
            url=mygene_service.url,
            batch_size=2,
            progress=False,
            **FAST,
        )
    assert len(mygene_service.requests) == 3
    assert [mygene_service.terms(r) for r in mygene_service.requests] == [
        ["CD3E", "MS4A1"],
        ["HBB", "UNKNOWN"],
        ["DUP1"],
    ]
    assert series.index.tolist() == genes
    assert series.name == "description"
    assert series["HBB"] == "Oxygen transport in red blood cells."
    assert pd.isna(series["UNKNOWN"])
    assert series.attrs["missing"] == ["UNKNOWN"]
    assert series.attrs["provenance"]["text_source"] == "ncbi"

    mygene_service.reset()
    with pytest.warns(UserWarning, match="1 of 5 genes"):
        again = se.pp.gene_descriptions(
            [*genes, "CD3E"], source="ncbi", cache_dir=tmp_path, url=mygene_service.url
        )
    assert mygene_service.requests == []  # "not found" is an answer too, and cached
    assert again.iloc[:5].equals(series)
    assert again.iloc[5] == CD3E_SUMMARY


def test_429_and_500_are_retried(mygene_service: MyGeneService) -> None:
    mygene_service.fail(mygene_service.query_path, 429, headers={"Retry-After": "0"})
    mygene_service.fail(mygene_service.query_path, 500)
    texts, _ = ncbi_descriptions(["CD3E"], url=mygene_service.url, max_retries=2, **FAST)
    assert texts == {"CD3E": CD3E_SUMMARY}
    assert len(mygene_service.requests) == 3


def test_exhausted_retries_report_cached_genes(mygene_service: MyGeneService, tmp_path: Path) -> None:
    cache = TextCache(tmp_path)
    ncbi_descriptions(["CD3E", "MS4A1"], cache=cache, url=mygene_service.url, **FAST)
    mygene_service.reset()
    mygene_service.fail(mygene_service.query_path, 502, times=10)
    with pytest.raises(ServiceError) as info:
        ncbi_descriptions(
            ["CD3E", "MS4A1", "HBB"], cache=cache, url=mygene_service.url, max_retries=1, **FAST
        )
    message = str(info.value)
    assert "gave up after 2 attempts" in message
    assert "HTTP 502" in message
    assert "2 of 3 genes' answers are already cached" in message
    assert [mygene_service.terms(r) for r in mygene_service.requests] == [["HBB"], ["HBB"]]


def test_client_errors_are_not_retried(mygene_service: MyGeneService) -> None:
    mygene_service.fail(mygene_service.query_path, 400, times=5)
    with pytest.raises(ServiceError, match="HTTP 400"):
        ncbi_descriptions(["CD3E"], url=mygene_service.url, max_retries=3, **FAST)
    assert len(mygene_service.requests) == 1


def test_unknown_option_names_the_accepted_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown options \['speciess'\].*'species'"):
        se.pp.gene_descriptions(["CD3E"], source="ncbi", speciess="mouse")
