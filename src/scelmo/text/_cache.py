"""A disk cache for model and service answers: gene texts and text embeddings, in one SQLite file."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

__all__ = ["CACHE_FILENAME", "CacheError", "TextCache", "default_cache_dir", "resolve_cache"]

CACHE_FILENAME = "text_cache.sqlite"
#: File names taken as the SQLite file itself; any other path is a folder.
SQLITE_SUFFIXES = frozenset({".sqlite", ".sqlite3", ".db"})
# Version 2 added a checksum per vector (version-1 files are upgraded in place).
_SCHEMA_VERSION = "2"
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
    checksum TEXT,
    PRIMARY KEY (encoder, model, text_sha256)
);
"""
# After the upgrade of a version-1 file, which has no checksum column before it.
_INDEXES = "CREATE INDEX IF NOT EXISTS vectors_dim ON vectors (encoder, model, dim);"


class CacheError(RuntimeError):
    """The cache file cannot be used: damaged, not a SQLite file, locked, or not writable.

    Examples
    --------
    >>> from scelmo.text._cache import CacheError
    >>> issubclass(CacheError, RuntimeError)
    True
    """


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _checksum(encoder: str, model: str, text_sha256: str, dim: int, data: bytes) -> str:
    """sha256 over the whole entry, so that a changed vector, size or key is noticed."""
    head = "\0".join((encoder, model, text_sha256, str(dim))).encode("utf-8")
    return hashlib.sha256(head + b"\0" + data).hexdigest()


def _vector_problem(vector: np.ndarray) -> str | None:
    """Why a vector must not be used or stored, or None."""
    if not np.isfinite(vector).all():
        return "not finite"
    if not vector.any():
        return "all zero"
    return None


def _entries(*, source: str | None, encoder: str | None, model: str | None) -> tuple[str, str, tuple]:
    """``(table, where, params)`` that select the entries of one text source or one encoder."""
    if (source is None) == (encoder is None):
        raise ValueError("Give exactly one of source= (text answers) or encoder= (vectors).")
    table, column, value = (
        ("texts", "source", source) if source is not None else ("vectors", "encoder", encoder)
    )
    if model is None:
        return table, f"{column} = ?", (value,)
    return table, f"{column} = ? AND model = ?", (value, model)


def _blocking_file(folder: Path) -> Path:
    """The existing file among ``folder`` and its parents that stops the folder being created."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder


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
        dimension, the vector as little-endian float32 bytes and a sha256 checksum of the
        entry. Nothing is pickled.

    Nothing bad is stored or served: :meth:`put_vectors` refuses vectors that are not finite,
    all zero, or of another size than the ones already cached for that encoder and model;
    :meth:`get_vectors` skips (with a warning) entries whose checksum, length or values are
    wrong, so that the caller encodes them again and replaces them. A damaged file raises a
    :class:`~scelmo.text._cache.CacheError` that names it; :meth:`forget` deletes the answers of
    one source or encoder and keeps the rest.

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
        if path.suffix not in SQLITE_SUFFIXES:
            if path.exists() and not path.is_dir():
                raise ValueError(
                    f"The cache path {path} is a file, not a folder: give a folder (the cache is "
                    f"{CACHE_FILENAME} in it) or a file ending in .sqlite."
                )
            path = path / CACHE_FILENAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(
                f"The cache folder {path.parent} cannot be created: {_blocking_file(path.parent)} is a file. "
                "Give a folder or a file ending in .sqlite."
            ) from None
        self.path = path
        self.timeout = timeout
        self._lock = threading.RLock()
        self._warned: set[tuple[str, str]] = set()
        # One connection shared by threads: sqlite3 serialises calls itself only when
        # check_same_thread is off *and* we hold our own lock around each statement group.
        try:
            self._conn = sqlite3.connect(path, timeout=timeout, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as err:
            raise CacheError(self._explain(err, opening=True)) from None
        try:
            with self._lock, self._guard(opening=True):
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(_SCHEMA)
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (_SCHEMA_VERSION,)
                )
                version = self._upgrade()
                self._conn.executescript(_INDEXES)
        except BaseException:
            self._conn.close()
            raise
        if version != _SCHEMA_VERSION:
            self._conn.close()
            raise RuntimeError(
                f"The cache file {path} has schema version {version}, this scelmo reads version "
                f"{_SCHEMA_VERSION}. Use another cache_dir= or delete the file to start a new cache."
            )

    def _upgrade(self) -> str:
        """Bring a version-1 file to version 2 (a checksum column); returns the file's version."""
        (version,) = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version != "1":
            return version
        with self._transaction(opening=True) as conn:
            # Another process may have upgraded the file since the read above.
            (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version == "1":
                # Entries of version 1 keep a NULL checksum: their values are still checked.
                conn.execute("ALTER TABLE vectors ADD COLUMN checksum TEXT")
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (_SCHEMA_VERSION,))
                version = _SCHEMA_VERSION
        return version

    def _explain(self, err: sqlite3.Error, *, opening: bool) -> str:
        text = str(err)
        if isinstance(err, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            return (
                f"The text cache {self.path} stayed locked by another process for {self.timeout:.0f} s "
                f"({text}); wait for that process or use another cache_dir=."
            )
        if isinstance(err, sqlite3.OperationalError) and ("readonly" in text or "unable to open" in text):
            return (
                f"The text cache {self.path} cannot be opened for writing ({text}); check the permissions "
                "of the file and its folder, or use another cache_dir=."
            )
        what = "is not a readable SQLite database" if opening else "is damaged"
        return (
            f"The text cache {self.path} {what} ({text}). It holds only answers that can be fetched "
            "again (gene texts, text vectors): delete it (or move it aside) and rerun, or pass "
            "another cache_dir= or cache=False."
        )

    @contextmanager
    def _guard(self, *, opening: bool = False) -> Iterator[None]:
        """Turn SQLite's errors into a :class:`CacheError` that names the file and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            raise CacheError(self._explain(err, opening=opening)) from err

    @contextmanager
    def _transaction(self, *, opening: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, else rolled back."""
        with self._lock, self._guard(opening=opening):
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # Also on Ctrl-C: a half-written batch is never committed.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _select_by_hash(self, sql: str, params: tuple, hashes: Sequence[str]) -> list[tuple]:
        """Rows of ``sql`` (ending in ``IN ({marks})``) for ``hashes``, a bounded number per statement."""
        rows: list[tuple] = []
        with self._lock, self._guard():
            for start in range(0, len(hashes), _LOOKUP_CHUNK):
                chunk = hashes[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows += self._conn.execute(sql.format(marks=marks), (*params, *chunk)).fetchall()
        return rows

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
        rows = self._select_by_hash(
            "SELECT key_sha256, value FROM texts WHERE source = ? AND model = ? AND key_sha256 IN ({marks})",
            (source, model),
            list(by_hash),
        )
        found: dict[str, str | None] = {by_hash[digest]: value for digest, value in rows}
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
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO texts VALUES (?, ?, ?, ?, ?, ?)", rows)

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
        ``text -> float32 vector`` for the texts found; missing texts are absent. An entry that
        fails its check (checksum, malformed, NaN or infinite values, all zeros) counts as missing,
        with a warning: a caller that encodes it again replaces it.

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
        rejected: Counter[str] = Counter()
        rows = self._select_by_hash(
            "SELECT text_sha256, dim, data, checksum FROM vectors WHERE encoder = ? AND model = ? "
            "AND text_sha256 IN ({marks})",
            (encoder, model),
            list(by_hash),
        )
        for digest, dim, data, checksum in rows:
            if not isinstance(data, bytes) or not isinstance(dim, int) or len(data) != 4 * dim:
                rejected["malformed"] += 1
                continue
            if checksum is not None and checksum != _checksum(encoder, model, digest, dim, data):
                rejected["checksum mismatch"] += 1
                continue
            vec = np.frombuffer(data, dtype="<f4").astype(np.float32)
            problem = _vector_problem(vec)
            if problem is not None:
                rejected[problem] += 1
                continue
            found[by_hash[digest]] = vec
        if rejected:
            n = sum(rejected.values())
            reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(rejected.items()))
            warnings.warn(
                f"{n} cached vector{'s' if n > 1 else ''} in {self.path} (encoder {encoder!r}, model "
                f"{model!r}) failed {'their' if n > 1 else 'its'} check ({reasons}); "
                f"{'they are' if n > 1 else 'it is'} treated as missing, encoded again and replaced.",
                UserWarning,
                stacklevel=2,
            )
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
            ``(len(texts), dim)`` array; stored as float32 with a checksum. Refused (nothing of
            the batch is stored) when a vector is not finite or all zero, or when the cache holds
            vectors of another size for this encoder and model.

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
        if not len(texts):
            return
        dim = vectors.shape[1]
        if dim == 0:
            raise ValueError("put_vectors refuses vectors of size 0.")
        for text, vector in zip(texts, vectors, strict=True):
            problem = _vector_problem(vector)
            if problem is not None:
                raise ValueError(
                    f"put_vectors refuses the vector of {text[:60]!r}: it is {problem}; "
                    "nothing of this batch was cached."
                )
        created = _now()
        rows = []
        for t, v in zip(texts, vectors, strict=True):
            digest, data = _sha256(t), np.ascontiguousarray(v).tobytes()
            rows.append(
                (encoder, model, digest, t, dim, data, created, _checksum(encoder, model, digest, dim, data))
            )
        with self._transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO vectors (encoder, model, text_sha256, text, dim, data, created, "
                "checksum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            # Checked after the insert, so that entries of another size that this batch
            # replaces do not count; the index makes it a lookup, not a scan.
            # Two range lookups on the index (an OR of both would scan this model's entries).
            other = (
                conn.execute(
                    "SELECT dim FROM vectors WHERE encoder = ? AND model = ? AND dim < ? LIMIT 1",
                    (encoder, model, dim),
                ).fetchone()
                or conn.execute(
                    "SELECT dim FROM vectors WHERE encoder = ? AND model = ? AND dim > ? "
                    "AND typeof(dim) = 'integer' LIMIT 1",
                    (encoder, model, dim),
                ).fetchone()
            )
            if other is not None:
                raise ValueError(
                    f"The cache {self.path} holds {other[0]}-d vectors for encoder {encoder!r}, model "
                    f"{model!r}; these are {dim}-d. One cache entry never mixes sizes: remove the old "
                    f"ones with TextCache({str(self.path)!r}).forget(encoder={encoder!r}, model={model!r})."
                )

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
        table, where, params = _entries(source=source, encoder=encoder, model=model)
        with self._lock, self._guard():
            (n,) = self._conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()
        return n

    def dims(self, encoder: str, model: str) -> dict[int, int]:
        """How many vectors of each size the cache holds for an encoder and model.

        Parameters
        ----------
        encoder, model
            As in :meth:`get_vectors`.

        Returns
        -------
        ``size -> number of vectors``: one entry, or none. (A file of schema version 1, written
        before sizes were checked, may hold several; :class:`~scelmo.text.CachedEncoder` repairs it.)

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from scelmo.text import TextCache
        >>> cache = TextCache(tempfile.mkdtemp())
        >>> cache.put_vectors("openai", "m", ["a", "b"], np.ones((2, 3)))
        >>> cache.dims("openai", "m")
        {3: 2}
        """
        with self._lock, self._guard():
            rows = self._conn.execute(
                "SELECT dim, COUNT(*) FROM vectors WHERE encoder = ? AND model = ? GROUP BY dim",
                (encoder, model),
            ).fetchall()
        # A damaged entry (a size that is not a number) is no size; get_vectors skips it.
        return {dim: int(n) for dim, n in rows if isinstance(dim, int)}

    def forget(
        self,
        *,
        source: str | None = None,
        encoder: str | None = None,
        model: str | None = None,
        dim: int | None = None,
    ) -> int:
        """Delete the cached answers of one text source or one encoder, keeping everything else.

        Parameters
        ----------
        source
            Delete text answers of this source.
        encoder
            Delete vectors of this encoder (give ``source`` or ``encoder``).
        model
            Only this model key.
        dim
            Only vectors of this size.

        Returns
        -------
        The number of entries deleted.

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from scelmo.text import TextCache
        >>> cache = TextCache(tempfile.mkdtemp())
        >>> cache.put_vectors("openai", "m", ["a"], np.ones((1, 2)))
        >>> cache.put_texts("llm", "gpt", {"prompt": "answer"})
        >>> cache.forget(encoder="openai"), cache.count(source="llm")
        (1, 1)
        """
        table, where, params = _entries(source=source, encoder=encoder, model=model)
        if dim is not None and encoder is None:
            raise ValueError("dim= applies to vectors: give encoder= with it.")
        if dim is not None:
            where += " AND dim = ?"
            params += (int(dim),)
        with self._transaction() as conn:
            return conn.execute(f"DELETE FROM {table} WHERE {where}", params).rowcount

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
