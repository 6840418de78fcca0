"""Text embeddings from the OpenAI API (or any OpenAI-compatible server)."""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Generator, Sequence
from contextlib import closing
from typing import Any

import numpy as np

from scelmo.text._concurrent import requests_with_progress
from scelmo.text._openai import (
    DEFAULT_OPENAI_URL,
    BadAnswer,
    make_openai_client,
    public_url,
    request_json,
    resolve_base_url,
)
from scelmo.text._retry import RetryPolicy

from ._base import TextEncoder, check_texts

__all__ = ["OpenAIEncoder"]

#: Output sizes of OpenAI's embedding models (others are learned from the first answer).
_KNOWN_DIMS = {"text-embedding-ada-002": 1536, "text-embedding-3-small": 1536, "text-embedding-3-large": 3072}


def _vector(embedding: Any) -> np.ndarray | None:
    """One ``embedding`` field: base64 little-endian float32, or a list of numbers; None if neither."""
    if isinstance(embedding, str):
        try:
            data = base64.b64decode(embedding, validate=True)
        except (binascii.Error, ValueError):
            return None
        return np.frombuffer(data, dtype="<f4").astype(np.float32) if len(data) % 4 == 0 else None
    if isinstance(embedding, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in embedding
    ):
        return np.asarray(embedding, dtype=np.float32)
    return None


def parse_embeddings(payload: Any, n_texts: int, url: str) -> np.ndarray:
    """The ``(n_texts, dim)`` vectors of an embeddings answer, in input order, checked.

    Every vector must be there once (by ``index``), all of one size, finite and not all zero;
    anything else raises :class:`~scelmo.text._openai.BadAnswer` naming ``url`` and what it sent.

    Examples
    --------
    >>> from scelmo.text.encoders._openai import parse_embeddings
    >>> answer = {"data": [{"index": 1, "embedding": [0.0, 2.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
    >>> parse_embeddings(answer, 2, "http://localhost/v1/embeddings")
    array([[1., 0.],
           [0., 2.]], dtype=float32)
    """
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        keys = sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise BadAnswer(f"{url} answered JSON without a 'data' list (got {keys})")
    if not data:
        raise BadAnswer(f"{url} answered no vectors ('data' is empty) for {n_texts} texts")
    if len(data) != n_texts:
        raise BadAnswer(f"{url} answered {len(data)} vectors for {n_texts} texts")
    vectors: list[np.ndarray | None] = [None] * n_texts
    for position, item in enumerate(data):
        index = item.get("index", position) if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < n_texts or vectors[index] is not None:
            raise BadAnswer(
                f"{url} answered an item with a missing, repeated or out-of-range 'index' ({index!r})"
            )
        vector = _vector(item.get("embedding"))
        if vector is None:
            raise BadAnswer(
                f"{url} answered an 'embedding' that is neither base64 float32 nor a list of numbers"
            )
        vectors[index] = vector
    sizes = list(dict.fromkeys(len(v) for v in vectors))  # type: ignore[arg-type]
    if len(sizes) > 1:
        shown = " and ".join(str(n) for n in sizes[:3])
        raise BadAnswer(f"{url} answered vectors of different sizes ({shown} values)")
    array = np.stack(vectors)  # type: ignore[arg-type]
    if sizes[0] == 0:
        raise BadAnswer(f"{url} answered empty vectors")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        raise BadAnswer(f"{url} answered NaN or infinite values in vector {int(np.flatnonzero(bad)[0])}")
    zero = ~array.any(axis=1)
    if zero.any():
        raise BadAnswer(f"{url} answered an all-zero vector (vector {int(np.flatnonzero(zero)[0])})")
    return array


class OpenAIEncoder(TextEncoder):
    """Embed texts with the OpenAI embeddings API (``client.embeddings.create``).

    Texts are sent in batches, several batches at a time (a thread pool of
    ``max_concurrency``). A batch that fails with HTTP 429, 408, 409 or 5xx, a timeout or a
    connection error is retried with exponential backoff, honouring the server's
    ``Retry-After``, and so is an answer that is not in the OpenAI format or holds bad
    vectors (NaN, all zero, another size than asked for or than the earlier answers); after
    ``max_retries`` retries a :class:`~scelmo.text.ServiceError` names the URL and what came
    back. On Ctrl-C no further request is sent and the call returns at once. Wrapped in :class:`~scelmo.text.CachedEncoder` (as
    :func:`scelmo.pp.build_gene_embeddings` does), every finished batch is stored at once,
    so a rerun sends only what is missing.

    Parameters
    ----------
    model
        Embedding model. ``"text-embedding-ada-002"`` (1536-d) is what GenePT and scELMo used.
    api_key
        API key; default ``$OPENAI_API_KEY``.
    base_url
        Any OpenAI-compatible endpoint; default ``$OPENAI_BASE_URL`` or OpenAI's.
    dimensions
        Shorter output for models that support it (``text-embedding-3-*``).
    batch_size
        Texts per request (OpenAI accepts up to 2048 inputs and about 300k tokens per request).
    max_concurrency
        Requests in flight at once.
    max_retries
        Retries per request after the first attempt.
    backoff
        Wait before the first retry in seconds; doubles each retry.
    max_backoff
        Longest computed wait in seconds.
    timeout
        Seconds before a request is abandoned (and retried).

    Examples
    --------
    >>> from scelmo.text import OpenAIEncoder
    >>> encoder = OpenAIEncoder("text-embedding-3-small", api_key="sk-...")
    >>> encoder.dim
    1536
    >>> encoder.encode(["CD3E is part of the T-cell receptor complex."])  # doctest: +SKIP
    """

    name = "openai"

    def __init__(
        self,
        model: str = "text-embedding-ada-002",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        dimensions: int | None = None,
        batch_size: int = 128,
        max_concurrency: int = 4,
        max_retries: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 60.0,
    ) -> None:
        if batch_size < 1 or max_concurrency < 1:
            raise ValueError(
                f"batch_size and max_concurrency must be >= 1, got {batch_size} and {max_concurrency}."
            )
        self.model = model
        self.api_key = api_key
        self.base_url = resolve_base_url(base_url)
        self.dimensions = dimensions
        self.batch_size = int(batch_size)
        self.max_concurrency = int(max_concurrency)
        self.retry = RetryPolicy(max_retries=max_retries, backoff=backoff, max_backoff=max_backoff)
        self.timeout = float(timeout)
        self._dim: int | None = dimensions or _KNOWN_DIMS.get(model)
        # The size every answer must have, and why; learned from the first answer when unknown.
        # A model's published size binds only at OpenAI's URL (another server may reuse the name).
        self._expected: int | None = None
        self._expected_why = ""
        if dimensions is not None:
            self._expected, self._expected_why = dimensions, f"dimensions={dimensions} was asked for"
        elif model in _KNOWN_DIMS and public_url(self.base_url) == DEFAULT_OPENAI_URL:
            self._expected, self._expected_why = _KNOWN_DIMS[model], f"the size of {model}"
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def dim(self) -> int | None:
        """Embedding dimension; ``None`` for an unknown model until the first answer."""
        return self._dim

    @property
    def cache_model(self) -> str:
        """Model, requested dimensions and (for other servers than OpenAI's) the endpoint."""
        key = self.model
        if self.dimensions is not None:
            key += f"|dimensions={self.dimensions}"
        if public_url(self.base_url) != DEFAULT_OPENAI_URL:
            key += f"|{public_url(self.base_url)}"
        return key

    def params(self) -> dict[str, Any]:
        """Settings recorded in provenance (the URL without credentials; never the key).

        Examples
        --------
        >>> from scelmo.text import OpenAIEncoder
        >>> OpenAIEncoder(api_key="sk-secret").params()["base_url"]
        'https://api.openai.com/v1'
        """
        return {
            "encoder": self.name,
            "model": self.model,
            "dimensions": self.dimensions,
            "base_url": public_url(self.base_url),
        }

    def __repr__(self) -> str:
        return f"OpenAIEncoder(model={self.model!r}, base_url={public_url(self.base_url)!r})"

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = make_openai_client(
                    api_key=self.api_key,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    purpose="OpenAIEncoder",
                )
        return self._client

    @property
    def endpoint(self) -> str:
        """The embeddings URL, without credentials (named in errors)."""
        return f"{public_url(self.base_url)}/embeddings"

    def _check_size(self, vectors: np.ndarray) -> None:
        size = vectors.shape[1]
        with self._client_lock:
            if self._expected is None:
                self._expected, self._expected_why = size, "the size of its earlier answers"
            expected, why = self._expected, self._expected_why
        if size != expected:
            raise BadAnswer(f"{self.endpoint} answered {size} values per vector, expected {expected} ({why})")
        self._dim = size

    def _request(self, batch: list[str], stop: threading.Event | None = None) -> np.ndarray:
        client = self._get_client()
        extra = {"dimensions": self.dimensions} if self.dimensions is not None else {}

        def parse(payload: Any) -> np.ndarray:
            vectors = parse_embeddings(payload, len(batch), self.endpoint)
            self._check_size(vectors)
            return vectors

        return request_json(
            lambda: client.embeddings.with_raw_response.create(
                model=self.model, input=batch, encoding_format="base64", **extra
            ),
            parse,
            endpoint=self.endpoint,
            policy=self.retry,
            what=f"OpenAI embeddings request to {self.endpoint} ({len(batch)} texts, model {self.model!r})",
            stop=stop,
        )

    def encode_batches(
        self, texts: Sequence[str], *, progress: bool = False
    ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """Send batches concurrently; yields ``(positions, vectors)`` as requests finish.

        When a request fails for good, no new requests are started, the ones in flight are
        finished and yielded, and then the error is raised. When the caller stops (Ctrl-C,
        closing the generator), no new request is started and nothing is waited for.

        Examples
        --------
        >>> from scelmo.text import OpenAIEncoder
        >>> encoder = OpenAIEncoder(api_key="sk-...", batch_size=2)
        >>> for positions, vectors in encoder.encode_batches(["a", "b", "c"]):  # doctest: +SKIP
        ...     print(positions, vectors.shape)
        """
        texts = check_texts(texts)
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ValueError(
                f"The OpenAI embeddings API rejects empty texts; texts at positions {empty[:5]} are empty. "
                "Drop them (they carry no information) before encoding."
            )
        if not texts:
            return
        self._get_client()  # a missing API key should fail before any thread starts
        batches = [
            np.arange(start, min(start + self.batch_size, len(texts)))
            for start in range(0, len(texts), self.batch_size)
        ]

        def request(positions: np.ndarray, stop: threading.Event) -> np.ndarray:
            return self._request([texts[i] for i in positions], stop)

        runs = requests_with_progress(
            request,
            batches,
            max_workers=self.max_concurrency,
            name="scelmo-openai",
            desc=f"OpenAI embeddings ({self.model})",
            progress=progress,
        )
        with closing(runs):
            for k, vectors in runs:
                yield batches[k], vectors
