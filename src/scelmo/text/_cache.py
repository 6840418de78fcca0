"""A disk cache for model and service answers: gene texts and text embeddings, in one SQLite file."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

__all__ = ["CACHE_FILENAME", "TextCache", "default_cache_dir", "resolve_cache"]

CACHE_FILENAME = "text_cache.sqlite"
_SCHEMA_VERSION = "1"
# SQLite allows at most 999 bound parameters per statement in old builds; stay well below.
_LOOKUP_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS texts (
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    key_sha256 TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    created TEXT NOT NULL,
    PRIMARY KEY (source, model, key_sha256)
);
CREATE TABLE IF NOT EXISTS vectors (
    encoder TEXT NOT NULL,
    model TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    text TEXT NOT NULL,
    dim INTEGER NOT NULL,
    data BLOB NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (encoder, model, text_sha256)
);
"""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_cache_dir() -> Path:
    """The folder of the default cache: ``cache/`` inside the scelmo data folder.

    Returns
    -------
    ``data_dir() / "cache"``, where :func:`scelmo.datasets.data_dir` honours ``$SCELMO_DATA_DIR``.

    Examples
    --------
    >>> from scelmo.text import default_cache_dir
    >>> default_cache_dir().name
    'cache'
    """
    from scelmo.datasets import data_dir

    return Path(data_dir()) / "cache"


class TextCache:
    """Answers of models and services kept on disk, keyed by what was asked.

    One SQLite file holds two tables:

    ``texts``
        Text answers (gene descriptions), keyed by ``(source, model, sha256(key))``; the key
        itself (a gene symbol or the exact prompt) is stored beside its hash. ``value`` may be
        NULL: the service answered that it has no text, which is also worth remembering.
    ``vectors``
        Text embeddings, keyed by ``(encoder, model, sha256(text))``, with the text, the
        dimension and the vector as little-endian float32 bytes. Nothing is pickled.

    Writes are committed per call of :meth:`put_texts` / :meth:`put_vectors`, so callers that
    write once per finished batch keep everything finished when a run is interrupted. The
    object may be shared between threads (one connection behind a lock); several processes
    may use the same file (write-ahead log, waits up to ``timeout`` seconds for a lock).

    Parameters
    ----------
    path
        The SQLite file, or a folder in which ``text_cache.sqlite`` is used. Created if absent.
        Default: :func:`default_cache_dir`.
    timeout
        Seconds to wait for another process that holds the write lock.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from scelmo.text import TextCache
    >>> cache = TextCache(tempfile.mkdtemp())
    >>> cache.put_vectors("my-encoder", "v1", ["hello"], np.ones((1, 3), dtype=np.float32))
    >>> cache.get_vectors("my-encoder", "v1", ["hello", "world"])["hello"]
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, path: str | os.PathLike | None = None, *, timeout: float = 60.0) -> None:
        path = Path(default_cache_dir() if path is None else path).expanduser()
        if path.suffix not in {".sqlite", ".sqlite3", ".db"}:
            path = path / CACHE_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        # One connection shared by threads: sqlite3 serialises calls itself only when
        # check_same_thread is off *and* we hold our own lock around each statement group.
        self._conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (_SCHEMA_VERSION,)
            )
            (version,) = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version != _SCHEMA_VERSION:
            raise RuntimeError(
                f"The cache file {path} has schema version {version}, this scelmo reads version "
                f"{_SCHEMA_VERSION}. Use another cache_dir= or delete the file to start a new cache."
            )

    def __repr__(self) -> str:
        return f"TextCache({str(self.path)!r})"

    # -- texts -----------------------------------------------------------------------------------

    def get_texts(self, source: str, model: str, keys: Iterable[str]) -> dict[str, str | None]:
        """Cached text answers for ``keys``.

        Parameters
        ----------
        source
            The text source, for example ``"ncbi"`` or ``"llm"``.
        model
            What else determines the answer (model name, species, temperature, ...).
        keys
            What was asked: gene symbols or exact prompts.

        Returns
        -------
        A dict with an entry for every key found; the value is ``None`` where the service
        answered that it has no text. Keys not in the cache are absent.

        Examples
        --------
        >>> import tempfile
        >>> from scelmo.text import TextCache
        >>> cache = TextCache(tempfile.mkdtemp())
        >>> cache.put_texts("ncbi", "human", {"CD3E": "A T-cell receptor gene.", "XYZ1": None})
        >>> cache.get_texts("ncbi", "human", ["CD3E", "XYZ1", "CD4"])
        {'CD3E': 'A T-cell receptor gene.', 'XYZ1': None}
        """
        keys = list(dict.fromkeys(keys))
        by_hash = {_sha256(k): k for k in keys}
        found: dict[str, str | None] = {}
        hashes = list(by_hash)
        with self._lock:
            for start in range(0, len(hashes), _LOOKUP_CHUNK):
                chunk = hashes[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key_sha256, value FROM texts WHERE source = ? AND model = ? AND key_sha256 IN ({marks})",
                    (source, model, *chunk),
                ).fetchall()
                for digest, value in rows:
                    found[by_hash[digest]] = value
        return {k: found[k] for k in keys if k in found}

    def put_texts(self, source: str, model: str, answers: Mapping[str, str | None]) -> None:
        """Store text answers and commit them.

        Parameters
        ----------
        source, model
            As in :meth:`get_texts`.
        answers
            ``key -> text`` (``None``: the service has no text for this key).

        Examples
        --------
        >>> import tempfile
        >>> from scelmo.text import TextCache
        >>> TextCache(tempfile.mkdtemp()).put_texts("llm", "gpt-4o", {"prompt about CD3E": "CD3E is ..."})
        """
        created = _now()
        rows = [(source, model, _sha256(k), k, v, created) for k, v in answers.items()]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO texts VALUES (?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- vectors ---------------------------------------------------------------------------------

    def get_vectors(self, encoder: str, model: str, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """Cached embeddings of ``texts``.

        Parameters
        ----------
        encoder
            The encoder family, for example ``"openai"`` or ``"sentence-transformers"``.
        model
            The model and every option that changes the vectors.
        texts
            The exact texts.

        Returns
        -------
        ``text -> float32 vector`` for the texts found; missing texts are absent.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from scelmo.text import TextCache
        >>> cache = TextCache(tempfile.mkdtemp())
        >>> cache.get_vectors("openai", "text-embedding-ada-002", ["never stored"])
        {}
        """
        texts = list(dict.fromkeys(texts))
        by_hash = {_sha256(t): t for t in texts}
        found: dict[str, np.ndarray] = {}
        hashes = list(by_hash)
        with self._lock:
            for start in range(0, len(hashes), _LOOKUP_CHUNK):
                chunk = hashes[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT text_sha256, dim, data FROM vectors WHERE encoder = ? AND model = ? "
                    f"AND text_sha256 IN ({marks})",
                    (encoder, model, *chunk),
                ).fetchall()
                for digest, dim, data in rows:
                    vec = np.frombuffer(data, dtype="<f4")
                    if vec.shape != (dim,):
                        # A truncated row (disk trouble) is treated as absent and recomputed.
                        continue
                    found[by_hash[digest]] = vec.astype(np.float32)
        return {t: found[t] for t in texts if t in found}

    def put_vectors(self, encoder: str, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store embeddings and commit them.

        Parameters
        ----------
        encoder, model
            As in :meth:`get_vectors`.
        texts
            The exact texts, one per row of ``vectors``.
        vectors
            ``(len(texts), dim)`` array; stored as float32.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from scelmo.text import TextCache
        >>> cache = TextCache(tempfile.mkdtemp())
        >>> cache.put_vectors("openai", "m", ["a", "b"], np.eye(2))
        >>> cache.count(encoder="openai")
        2
        """
        vectors = np.asarray(vectors, dtype="<f4")
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ValueError(
                f"put_vectors needs one row per text: got {len(texts)} texts and an array of shape {vectors.shape}."
            )
        created = _now()
        dim = vectors.shape[1]
        rows = [
            (encoder, model, _sha256(t), t, dim, np.ascontiguousarray(v).tobytes(), created)
            for t, v in zip(texts, vectors, strict=True)
        ]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # -- housekeeping ----------------------------------------------------------------------------

    def count(
        self, *, source: str | None = None, encoder: str | None = None, model: str | None = None
    ) -> int:
        """Number of cached entries for a text source or an encoder (optionally one model).

        Parameters
        ----------
        source
            Count text answers of this source.
        encoder
            Count vectors of this encoder (give ``source`` or ``encoder``).
        model
            Only this model key.

        Returns
        -------
        The number of rows.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from scelmo.text import TextCache
        >>> cache = TextCache(tempfile.mkdtemp())
        >>> cache.put_vectors("openai", "m", ["a"], np.ones((1, 2)))
        >>> cache.count(encoder="openai"), cache.count(source="ncbi")
        (1, 0)
        """
        if (source is None) == (encoder is None):
            raise ValueError("Give exactly one of source= (text answers) or encoder= (vectors).")
        table, column, value = (
            ("texts", "source", source) if source is not None else ("vectors", "encoder", encoder)
        )
        sql = f"SELECT COUNT(*) FROM {table} WHERE {column} = ?"
        params: tuple = (value,)
        if model is not None:
            sql += " AND model = ?"
            params += (model,)
        with self._lock:
            (n,) = self._conn.execute(sql, params).fetchone()
        return n

    def close(self) -> None:
        """Close the database connection.

        Examples
        --------
        >>> import tempfile
        >>> from scelmo.text import TextCache
        >>> TextCache(tempfile.mkdtemp()).close()
        """
        with self._lock:
            self._conn.close()

    def __enter__(self) -> TextCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_cache(
    cache: bool | str | os.PathLike | TextCache | None, cache_dir: str | os.PathLike | None = None
) -> TextCache | None:
    """Turn the ``cache=`` / ``cache_dir=`` arguments of the public functions into a cache.

    Parameters
    ----------
    cache
        ``True``: the cache in ``cache_dir`` (default :func:`default_cache_dir`); ``False`` or
        ``None``: no cache; a path: the cache there; a :class:`TextCache`: itself.
    cache_dir
        Folder (or SQLite file) of the cache when ``cache=True``.

    Returns
    -------
    The cache, or ``None`` when caching is off.

    Examples
    --------
    >>> from scelmo.text import resolve_cache
    >>> resolve_cache(False) is None
    True
    """
    if isinstance(cache, TextCache):
        return cache
    if cache is None or cache is False:
        return None
    if cache is True:
        return TextCache(cache_dir)
    if isinstance(cache, str | os.PathLike):
        return TextCache(cache)
    raise TypeError(
        f"cache= must be True, False, a folder path or a scelmo.text.TextCache, not {type(cache).__name__}."
    )
