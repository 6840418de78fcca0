"""The on-disk cache of service answers and vectors (SQLite)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from scelmo.text import CachedEncoder, TextCache, TextEncoder, resolve_cache
from scelmo.text._cache import CACHE_FILENAME, default_cache_dir


class CountingEncoder(TextEncoder):
    """A tiny deterministic encoder that records what it was asked to encode."""

    name = "counting"
    model = "v1"
    batch_size = 2

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.fail_after = fail_after

    @property
    def dim(self) -> int:
        return 3

    def encode_batches(self, texts, *, progress=False):
        for start in range(0, len(texts), self.batch_size):
            if self.fail_after is not None and start >= self.fail_after:
                from scelmo.text import ServiceError

                raise ServiceError("the service is down")
            idx = np.arange(start, min(start + self.batch_size, len(texts)))
            self.seen.extend(texts[i] for i in idx)
            yield idx, np.array([[len(texts[i]), i, 1.0] for i in idx], dtype=np.float32)


def test_vectors_roundtrip_as_float32_bytes(tmp_path: Path) -> None:
    cache = TextCache(tmp_path)
    vectors = np.array([[0.1, -2.5, 3e-8], [1.0, 2.0, 3.0]], dtype=np.float64)
    cache.put_vectors("enc", "m", ["α text", "second"], vectors)
    got = cache.get_vectors("enc", "m", ["second", "α text", "absent"])
    assert list(got) == ["second", "α text"]
    np.testing.assert_array_equal(got["α text"], vectors[0].astype(np.float32))
    assert got["second"].dtype == np.float32
    # Stored as raw little-endian float32 with the dimension, the key parts and the text: no pickle.
    with sqlite3.connect(tmp_path / CACHE_FILENAME) as conn:
        row = conn.execute(
            "SELECT encoder, model, text, dim, length(data), text_sha256 FROM vectors WHERE text = 'second'"
        ).fetchone()
    import hashlib

    assert row == ("enc", "m", "second", 3, 12, hashlib.sha256(b"second").hexdigest())


def test_keys_separate_encoder_model_and_exact_text(tmp_path: Path) -> None:
    cache = TextCache(tmp_path / "c.sqlite")
    cache.put_vectors("enc", "m1", ["text"], np.ones((1, 2)))
    assert cache.get_vectors("enc", "m2", ["text"]) == {}
    assert cache.get_vectors("other", "m1", ["text"]) == {}
    assert cache.get_vectors("enc", "m1", ["text "]) == {}
    assert cache.count(encoder="enc") == 1
    assert cache.count(encoder="enc", model="m2") == 0


def test_texts_store_none_as_an_answer(tmp_path: Path) -> None:
    cache = TextCache(tmp_path)
    cache.put_texts("ncbi", "human", {"CD3E": "summary", "NOPE": None})
    assert cache.get_texts("ncbi", "human", ["CD3E", "NOPE", "CD4"]) == {"CD3E": "summary", "NOPE": None}
    assert cache.count(source="ncbi") == 2
    # A second cache object on the same file (another process in real use) sees the commit.
    assert TextCache(tmp_path).get_texts("ncbi", "human", ["CD3E"]) == {"CD3E": "summary"}


def test_threads_can_share_a_cache(tmp_path: Path) -> None:
    cache = TextCache(tmp_path)

    def work(worker: int) -> None:
        for i in range(20):
            cache.put_vectors("enc", "m", [f"w{worker}-{i}"], np.full((1, 4), worker + 1, dtype=np.float32))
            assert f"w{worker}-{i}" in cache.get_vectors("enc", "m", [f"w{worker}-{i}"])

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.count(encoder="enc") == 160
    assert cache.get_vectors("enc", "m", ["w7-19"])["w7-19"].tolist() == [8.0] * 4


def test_many_keys_are_looked_up_in_chunks(tmp_path: Path) -> None:
    cache = TextCache(tmp_path)
    texts = [f"gene {i}" for i in range(1234)]
    cache.put_vectors("enc", "m", texts, np.arange(1, 1235, dtype=np.float32)[:, None])
    got = cache.get_vectors("enc", "m", texts)
    assert len(got) == 1234
    assert got["gene 1000"][0] == 1001.0


def test_cached_encoder_encodes_only_missing_unique_texts(tmp_path: Path) -> None:
    inner = CountingEncoder()
    encoder = CachedEncoder(inner, cache=tmp_path)
    first = encoder.encode(["aa", "b", "aa", "cccc"])
    assert inner.seen == ["aa", "b", "cccc"]  # the duplicate is encoded once
    np.testing.assert_array_equal(first[:, 0], [2, 1, 2, 4])
    assert encoder.last_stats == {"texts": 4, "unique": 3, "cached": 0, "encoded": 3}

    inner.seen.clear()
    second = CachedEncoder(CountingEncoder(), cache=tmp_path)
    again = second.encode(["cccc", "new", "aa"])
    assert second.encoder.seen == ["new"]
    np.testing.assert_array_equal(again[[0, 2]], first[[3, 0]])
    assert second.last_stats["cached"] == 2


def test_cached_encoder_keeps_finished_batches_when_the_service_fails(tmp_path: Path) -> None:
    from scelmo.text import ServiceError

    texts = [f"t{i}" for i in range(6)]
    with pytest.raises(ServiceError, match=r"4 of 6 texts are already cached .* only the other 2"):
        CachedEncoder(CountingEncoder(fail_after=4), cache=tmp_path).encode(texts)
    rerun = CachedEncoder(CountingEncoder(), cache=tmp_path)
    rerun.encode(texts)
    assert rerun.encoder.seen == ["t4", "t5"]


def test_resolve_cache_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCELMO_DATA_DIR", str(tmp_path / "data"))
    assert resolve_cache(False) is None
    default = resolve_cache(True)
    assert (
        default.path == tmp_path / "data" / "cache" / CACHE_FILENAME == default_cache_dir() / CACHE_FILENAME
    )
    assert resolve_cache(True, tmp_path / "elsewhere").path == tmp_path / "elsewhere" / CACHE_FILENAME
    assert resolve_cache(default) is default
    with pytest.raises(TypeError, match="cache= must be"):
        resolve_cache(3)  # type: ignore[arg-type]


def test_schema_version_mismatch_is_explained(tmp_path: Path) -> None:
    TextCache(tmp_path).close()
    with sqlite3.connect(tmp_path / CACHE_FILENAME) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RuntimeError, match="schema version 99"):
        TextCache(tmp_path)
