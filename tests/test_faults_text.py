"""Fault injection for the text layer: a hostile OpenAI-compatible server, a damaged cache, Ctrl-C.

Every case checks the exact outcome: the error names the cause (the URL and what came back),
nothing bad or partial is cached, nothing finished is lost, and a rerun against a repaired
server repairs the cache while sending only what is missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openai")

from _servers import OpenAIService, fake_embedding

from scelmo.text import CachedEncoder, OpenAIEncoder, ServiceError, TextCache
from scelmo.text._cache import CACHE_FILENAME, CacheError
from scelmo.text.sources import SCELMO_GENE_PROMPT, llm_descriptions

# Tiny waits, so that a retried case costs milliseconds.
FAST = {"backoff": 0.001, "max_backoff": 0.001}
MODEL = "local-embedder"


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[OpenAIService]:
    monkeypatch.setenv("SCELMO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAIService() as server:
        yield server


def expected(texts: list[str], dim: int = 16) -> np.ndarray:
    return np.stack([fake_embedding(t, dim) for t in texts])


def encoder_for(service: OpenAIService, cache: Path, **options) -> CachedEncoder:
    settings = {"batch_size": 2, "max_concurrency": 1, "max_retries": 1, **FAST, **options}
    return CachedEncoder(OpenAIEncoder(MODEL, base_url=service.url, **settings), cache=cache)


def sent(service: OpenAIService) -> list[str]:
    return [t for r in service.requests_to(service.embeddings_path) for t in r.json()["input"]]


def cached(service: OpenAIService, cache: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """What the cache holds for these texts (the encoder's key: model and URL)."""
    if not (cache / CACHE_FILENAME).exists():
        return {}
    with TextCache(cache) as store:
        return store.get_vectors("openai", f"{MODEL}|{service.url}", texts)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


TEXTS = ["alpha gene", "beta gene", "gamma gene", "delta gene"]


# -- bad vectors: retried, never cached, repaired by a rerun -------------------------------------


@pytest.mark.parametrize(
    ("kind", "dim", "cause"),
    [
        ("nan", None, r"NaN or infinite values in vector 0"),
        ("zero", None, r"an all-zero vector \(vector 0\)"),
        ("size", 12, r"12 values per vector, expected 16"),
    ],
)
def test_bad_vectors_are_a_failed_request_and_never_cached(
    service: OpenAIService, cache: Path, kind: str, dim: int | None, cause: str
) -> None:
    # The first batch is good; the second batch gets bad vectors on every try.
    encoder = encoder_for(service, cache)
    encoder.encode(TEXTS[:2])
    service.answer_badly(kind, dim=dim, times=2)
    with pytest.raises(ServiceError) as info:
        encoder.encode(TEXTS)
    message = str(info.value)
    assert f"{service.url}/embeddings answered" in message
    assert "gave up after 2 attempts" in message
    assert len(re.findall(cause, message)) == 1, message
    assert "2 of 4 texts are already cached" in message
    # Only the good batch is cached, with its exact vectors.
    good = cached(service, cache, TEXTS)
    assert sorted(good) == sorted(TEXTS[:2])
    np.testing.assert_array_equal(np.stack([good[t] for t in TEXTS[:2]]), expected(TEXTS[:2]))
    # The server is fixed: the rerun asks for the failed batch only, and everything is right.
    service.reset()
    vectors = encoder_for(service, cache).encode(TEXTS)
    np.testing.assert_array_equal(vectors, expected(TEXTS))
    assert sorted(sent(service)) == sorted(TEXTS[2:])


def test_one_bad_answer_is_retried_and_the_good_retry_is_used(service: OpenAIService, cache: Path) -> None:
    service.answer_badly("nan")
    vectors = encoder_for(service, cache).encode(TEXTS[:2])
    np.testing.assert_array_equal(vectors, expected(TEXTS[:2]))
    assert len(service.requests) == 2


def test_sizes_that_change_between_batches_stop_at_the_first_odd_batch(
    service: OpenAIService, cache: Path
) -> None:
    encoder = encoder_for(service, cache)
    # The first batch sets the size (16); the second answers 8 values per vector, twice.
    service.answer_badly("size", dim=16, times=1)
    service.answer_badly("size", dim=8, times=2)
    with pytest.raises(
        ServiceError, match=r"8 values per vector, expected 16 \(the size of its earlier answers\)"
    ):
        encoder.encode(TEXTS)
    assert sorted(cached(service, cache, TEXTS)) == sorted(TEXTS[:2])
    service.reset()
    vectors = encoder_for(service, cache).encode(TEXTS)
    np.testing.assert_array_equal(vectors, expected(TEXTS))
    assert sorted(sent(service)) == sorted(TEXTS[2:])


def test_dimensions_the_server_ignores_are_refused(service: OpenAIService, cache: Path) -> None:
    service.answer_badly("size", dim=16, times=2)
    with pytest.raises(
        ServiceError, match=r"16 values per vector, expected 8 \(dimensions=8 was asked for\)"
    ):
        encoder_for(service, cache, dimensions=8).encode(TEXTS[:2])
    assert cached(service, cache, TEXTS[:2]) == {}


def test_a_server_that_answers_another_size_than_the_cache_is_stopped(
    service: OpenAIService, cache: Path
) -> None:
    encoder_for(service, cache).encode(TEXTS[:2])
    service.dim = 8  # the model behind the URL changed
    with pytest.raises(
        RuntimeError, match=r"answered 8-d vectors, but the cache .* holds 16-d vectors"
    ) as info:
        encoder_for(service, cache).encode(TEXTS)
    assert "forget(encoder='openai'" in str(info.value)
    assert sorted(cached(service, cache, TEXTS)) == sorted(TEXTS[:2])
    # The way out named in the message keeps the other cached answers (here an LLM text).
    with TextCache(cache) as store:
        store.put_texts("llm", "m", {"prompt": "answer"})
        assert store.forget(encoder="openai", model=f"{MODEL}|{service.url}") == 2
    vectors = encoder_for(service, cache).encode(TEXTS)
    np.testing.assert_array_equal(vectors, expected(TEXTS, 8))
    assert TextCache(cache).get_texts("llm", "m", ["prompt"]) == {"prompt": "answer"}


# -- answers that are not the OpenAI format ------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        ("garbage", r"a body that is not JSON \(status 200, application/json\): '\{\"object\": \"list\""),
        (
            "html",
            r"an HTML page \(status 200, text/html; charset=utf-8\): '<!DOCTYPE html><html><head><title>Sign in",
        ),
        ("empty", r"no vectors \('data' is empty\) for 2 texts"),
        ("ragged", r"vectors of different sizes \(16 and 15 values\)"),
    ],
)
def test_answers_that_are_not_the_openai_format(
    service: OpenAIService, cache: Path, kind: str, cause: str
) -> None:
    service.answer_badly(kind, times=2)
    with pytest.raises(ServiceError, match=cause) as info:
        encoder_for(service, cache).encode(TEXTS[:2])
    message = str(info.value)
    assert f"OpenAI embeddings request to {service.url}/embeddings" in message
    assert "gave up after 2 attempts" in message
    assert len(service.requests) == 2  # a failed request, retried
    assert cached(service, cache, TEXTS) == {}
    # Once is retried and the retry's answer used.
    service.reset()
    service.answer_badly(kind)
    np.testing.assert_array_equal(encoder_for(service, cache).encode(TEXTS[:2]), expected(TEXTS[:2]))
    assert len(service.requests) == 2


def test_float_lists_instead_of_base64_are_read(service: OpenAIService, cache: Path) -> None:
    service.answer_badly("floats")
    np.testing.assert_array_equal(encoder_for(service, cache).encode(TEXTS[:2]), expected(TEXTS[:2]))
    assert len(service.requests) == 1


@pytest.mark.parametrize("status", [429, 500])
def test_429_and_500_name_the_url(service: OpenAIService, cache: Path, status: int) -> None:
    service.fail(service.embeddings_path, status, times=5)
    with pytest.raises(ServiceError, match=rf"request to {service.url}/embeddings .*HTTP {status}"):
        encoder_for(service, cache, max_retries=2).encode(TEXTS[:2])
    assert len(service.requests) == 3


def test_slow_answers_time_out_and_are_retried(service: OpenAIService, cache: Path) -> None:
    service.delay = 0.3
    with pytest.raises(ServiceError, match=rf"request to {service.url}/embeddings .*timed out"):
        encoder_for(service, cache, timeout=0.1).encode(TEXTS[:2])
    assert len(service.requests) == 2


# -- the cache on disk ---------------------------------------------------------------------------


def test_a_vector_altered_on_disk_is_detected_and_encoded_again(service: OpenAIService, cache: Path) -> None:
    encoder_for(service, cache).encode(TEXTS)
    altered = expected(["something else"])[0].astype("<f4").tobytes()  # right length, other values
    with sqlite3.connect(cache / CACHE_FILENAME) as conn:
        conn.execute("UPDATE vectors SET data = ? WHERE text = ?", (altered, "gamma gene"))
        # Text where bytes belong, of the right length.
        conn.execute("UPDATE vectors SET data = ? WHERE text = ?", ("x" * 64, "delta gene"))
    service.reset()
    with pytest.warns(
        UserWarning, match=r"2 cached vectors .* failed their check \(checksum mismatch: 1, malformed: 1\)"
    ):
        vectors = encoder_for(service, cache).encode(TEXTS)
    np.testing.assert_array_equal(vectors, expected(TEXTS))
    assert sent(service) == ["delta gene", "gamma gene"]
    # Repaired on disk: the next run sends nothing and warns nothing.
    service.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(encoder_for(service, cache).encode(TEXTS), expected(TEXTS))
    assert service.requests == []


_SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE texts (source TEXT NOT NULL, model TEXT NOT NULL, key_sha256 TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT, created TEXT NOT NULL, PRIMARY KEY (source, model, key_sha256));
CREATE TABLE vectors (encoder TEXT NOT NULL, model TEXT NOT NULL, text_sha256 TEXT NOT NULL, text TEXT NOT NULL,
    dim INTEGER NOT NULL, data BLOB NOT NULL, created TEXT NOT NULL, PRIMARY KEY (encoder, model, text_sha256));
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_a_cache_poisoned_by_an_earlier_version_is_repaired(service: OpenAIService, cache: Path) -> None:
    """scelmo before checksums cached whatever came back: NaN rows, rows of another size, zero rows."""
    cache.mkdir()
    model = f"{MODEL}|{service.url}"
    rows = {
        "alpha gene": fake_embedding("alpha gene"),
        "beta gene": fake_embedding("beta gene"),
        "gamma gene": np.full(16, np.nan, dtype=np.float32),
        "delta gene": fake_embedding("delta gene", 8),
        "epsilon gene": np.zeros(16, dtype=np.float32),
    }
    with sqlite3.connect(cache / CACHE_FILENAME) as conn:
        conn.executescript(_SCHEMA_1)
        conn.executemany(
            "INSERT INTO vectors VALUES ('openai', ?, ?, ?, ?, ?, 'then')",
            [
                (model, hashlib.sha256(t.encode()).hexdigest(), t, len(v), v.astype("<f4").tobytes())
                for t, v in rows.items()
            ],
        )
        conn.execute(
            "INSERT INTO texts VALUES ('llm', 'm', ?, 'prompt', 'answer', 'then')",
            (hashlib.sha256(b"prompt").hexdigest(),),
        )
    texts = list(rows)
    with pytest.warns(UserWarning, match="cached vector") as record:
        vectors = encoder_for(service, cache).encode(texts)
    np.testing.assert_array_equal(vectors, expected(texts))
    assert sorted(sent(service)) == ["delta gene", "epsilon gene", "gamma gene"]
    messages = " ".join(str(w.message) for w in record)
    assert "not finite: 1" in messages
    assert "all zero: 1" in messages
    assert "1 cached vectors of size 8" in messages
    with TextCache(cache) as store:
        assert store.dims("openai", model) == {16: 5}
        assert store.get_texts("llm", "m", ["prompt"]) == {"prompt": "answer"}
    service.reset()
    encoder_for(service, cache).encode(texts)
    assert service.requests == []


def test_a_corrupted_cache_file_is_named_with_what_to_do(service: OpenAIService, cache: Path) -> None:
    cache.mkdir()
    (cache / CACHE_FILENAME).write_bytes(b"this is not a database, it was overwritten" * 200)
    with pytest.raises(CacheError) as info:
        encoder_for(service, cache)
    message = str(info.value)
    assert str(cache / CACHE_FILENAME) in message
    assert "not a readable SQLite database" in message
    assert "delete it (or move it aside)" in message
    assert "cache=False" in message
    assert "\n" not in message
    # The rest of the package works: encoding without that cache, and with a fresh one.
    vectors = OpenAIEncoder(MODEL, base_url=service.url).encode(TEXTS[:2])
    np.testing.assert_array_equal(vectors, expected(TEXTS[:2]))
    np.testing.assert_array_equal(encoder_for(service, cache.parent / "new").encode(TEXTS[:2]), vectors)


def test_a_cache_damaged_inside_is_named_when_read(service: OpenAIService, cache: Path) -> None:
    texts = [f"gene number {i} " + "x" * 400 for i in range(400)]
    encoder_for(service, cache, batch_size=100).encode(texts)
    path = cache / CACHE_FILENAME
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    # Overwrite the inside of the table's pages (not the header): "database disk image is malformed".
    data[3 * page : len(data) - page] = b"\xff" * (len(data) - 4 * page)
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=rf"{path}.*is damaged.*delete it \(or move it aside\)"):
        encoder_for(service, cache).encode(texts)


@pytest.mark.parametrize("name", ["genes.npz", "genes.npz/cache", "table.sqlite"])
def test_cache_pointing_at_a_file_is_one_clear_line(
    service: OpenAIService, tmp_path: Path, name: str
) -> None:
    (tmp_path / "genes.npz").write_bytes(b"PK\x03\x04 a zip file")
    (tmp_path / "table.sqlite").write_text("id,value\n1,2\n")
    with pytest.raises((ValueError, CacheError)) as info:
        encoder_for(service, tmp_path / name)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "genes.npz" if name != "table.sqlite" else tmp_path / "table.sqlite") in message
    assert "cache" in message
    assert not isinstance(info.value, FileExistsError | NotADirectoryError)
    assert (tmp_path / "genes.npz").read_bytes() == b"PK\x03\x04 a zip file"


# -- Ctrl-C --------------------------------------------------------------------------------------

_CLIENT = """
import atexit, signal, sys, time
# What a terminal gives a program, even when the test runner ignores SIGINT.
signal.signal(signal.SIGINT, signal.default_int_handler)
# When the package has handed control back (CLOCK_MONOTONIC is shared by processes on Linux);
# what follows is the interpreter's own shutdown.
atexit.register(lambda: print("exiting at", time.monotonic(), flush=True))
from scelmo.text import CachedEncoder, OpenAIEncoder
texts = [f"text number {{i}}" for i in range({n})]
encoder = OpenAIEncoder({model!r}, base_url={url!r}, api_key="sk-test", batch_size=2, max_concurrency=2,
                        max_retries=1000, backoff=0.01, max_backoff=0.01, timeout=60)
print("ready", flush=True)
CachedEncoder(encoder, cache={cache!r}).encode(texts)
print("finished", flush=True)
"""


def test_ctrl_c_stops_requests_at_once_and_keeps_finished_batches(
    service: OpenAIService, cache: Path
) -> None:
    # A slow server (0.6 s an answer) that answers 4 batches, then fails every request (the
    # client retries them); SIGINT arrives 0.2 s after a request, far from the next one.
    service.delay = 0.6
    service.answer_limit = 4
    service.over_limit_status = 503
    code = textwrap.dedent(_CLIENT.format(n=200, model=MODEL, url=service.url, cache=str(cache)))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 60
        while len(service.requests) < 8:  # 4 answered batches, then 4 failed tries
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the client never got going: {proc.communicate(timeout=5)[1].decode()[-2000:]}")
            time.sleep(0.005)
        time.sleep(max(0.0, service.requests[-1].received + 0.2 - time.monotonic()))
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    stdout, stderr = (out.decode() for out in proc.communicate())
    assert "KeyboardInterrupt" in stderr
    assert proc.returncode in (-signal.SIGINT, 130), stderr[-2000:]
    # The package hands control back at once (before the fix: after every retry of the requests
    # in flight). What follows is the interpreter tearing down the ~1,700 modules that
    # `import scelmo` loads, 0.5-4 s depending on the machine's load.
    assert stdout.startswith("ready\nexiting at "), stdout
    assert float(stdout.split()[-1]) - signalled < 0.5
    assert took < 8.0
    late = [r.received - signalled for r in service.requests if r.received > signalled]
    assert late == [], f"{len(late)} requests after Ctrl-C, the last {max(late):.1f} s after it"
    # The 4 finished batches are in the cache, with the served vectors; nothing else is.
    texts = [f"text number {i}" for i in range(200)]
    answered = [t for r in service.requests[:4] for t in r.json()["input"]]
    got = cached(service, cache, texts)
    assert sorted(got) == sorted(answered)
    assert len(got) == 8
    np.testing.assert_array_equal(np.stack([got[t] for t in answered]), expected(answered))


def test_ctrl_c_stops_llm_requests_at_once(service: OpenAIService, cache: Path) -> None:
    """The LLM text source shares the request runner; Ctrl-C in the calling thread stops it."""
    service.delay = 0.5
    service.answer_limit = 2
    service.over_limit_status = 503
    genes = [f"GENE{i}" for i in range(30)]
    signalled: list[float] = []

    def press_ctrl_c() -> None:
        while len(service.requests) < 4:  # 2 answers, then failed tries being retried
            time.sleep(0.005)
        time.sleep(max(0.0, service.requests[-1].received + 0.15 - time.monotonic()))
        signalled.append(time.monotonic())
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        llm_descriptions(
            genes, cache=TextCache(cache), base_url=service.url, max_concurrency=2, max_retries=1000, **FAST
        )
    returned = time.monotonic()
    presser.join()
    assert returned - signalled[0] < 0.5
    time.sleep(1.0)  # longer than an answer takes: a worker still retrying would have sent again
    assert [r for r in service.requests if r.received > signalled[0]] == []
    answered = [r.json()["messages"][0]["content"] for r in service.requests[:2]]
    with TextCache(cache) as store:
        assert sorted(
            store.get_texts(
                "llm",
                f"gpt-3.5-turbo-1106|temperature=None|max_tokens=None|system=None|{service.url}",
                answered,
            )
        ) == sorted(answered)
        assert store.count(source="llm") == 2


@pytest.mark.parametrize(
    ("kind", "cause"),
    [("garbage", "a body that is not JSON"), ("html", r"an HTML page \(status 200, text/html")],
)
def test_llm_answers_that_are_not_a_chat_completion(
    service: OpenAIService, cache: Path, kind: str, cause: str
) -> None:
    service.answer_badly(kind, chat=True)
    texts, _ = llm_descriptions(["CD3E"], cache=TextCache(cache), base_url=service.url, **FAST)
    assert texts["CD3E"].startswith("Summary for the prompt")
    assert len(service.requests) == 2
    service.reset()
    service.answer_badly(kind, chat=True, times=2)
    with pytest.raises(ServiceError, match=rf"{service.url}/chat/completions answered {cause}"):
        llm_descriptions(["CD4"], cache=TextCache(cache), base_url=service.url, max_retries=1, **FAST)
    assert (
        TextCache(cache).get_texts(
            "llm",
            f"gpt-3.5-turbo-1106|temperature=None|max_tokens=None|system=None|{service.url}",
            [SCELMO_GENE_PROMPT.format(gene="CD4")],
        )
        == {}
    )
