"""Text embeddings from the OpenAI API (or any OpenAI-compatible server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from .._openai import (
    DEFAULT_OPENAI_URL,
    classify_openai_error,
    make_openai_client,
    public_url,
    resolve_base_url,
)
from .._progress import progress_bar
from .._retry import RetryPolicy, call_with_retries
from ._base import TextEncoder, check_texts

__all__ = ["OpenAIEncoder"]

#: Output sizes of OpenAI's embedding models (others are learned from the first answer).
_KNOWN_DIMS = {"text-embedding-ada-002": 1536, "text-embedding-3-small": 1536, "text-embedding-3-large": 3072}


class OpenAIEncoder(TextEncoder):
    """Embed texts with the OpenAI embeddings API (``client.embeddings.create``).

    Texts are sent in batches, several batches at a time (a thread pool of
    ``max_concurrency``). A batch that fails with HTTP 429, 408, 409 or 5xx, a timeout or a
    connection error is retried with exponential backoff, honouring the server's
    ``Retry-After``; after ``max_retries`` retries a :class:`~scelmo.text.ServiceError` says
    what failed. Wrapped in :class:`~scelmo.text.CachedEncoder` (as
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

    def _request(self, batch: list[str]) -> np.ndarray:
        client = self._get_client()
        extra = {"dimensions": self.dimensions} if self.dimensions is not None else {}

        def call() -> Any:
            return client.embeddings.create(model=self.model, input=batch, **extra)

        response = call_with_retries(
            call,
            policy=self.retry,
            classify=classify_openai_error,
            what=f"OpenAI embeddings request ({len(batch)} texts, model {self.model!r})",
        )
        items = sorted(response.data, key=lambda item: item.index)
        if len(items) != len(batch) or [item.index for item in items] != list(range(len(batch))):
            raise RuntimeError(
                f"The embeddings endpoint answered {len(items)} vectors for {len(batch)} texts; "
                "the server at base_url does not follow the OpenAI format."
            )
        vectors = np.asarray([item.embedding for item in items], dtype=np.float32)
        self._dim = vectors.shape[1]
        return vectors

    def encode_batches(
        self, texts: Sequence[str], *, progress: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Send batches concurrently; yields ``(positions, vectors)`` as requests finish.

        When a request fails for good, no new requests are started, the ones in flight are
        finished and yielded, and then the error is raised.

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
        starts = range(0, len(texts), self.batch_size)
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="scelmo-openai")
        pending: dict[Future, np.ndarray] = {}
        error: BaseException | None = None
        try:
            for start in starts:
                positions = np.arange(start, min(start + self.batch_size, len(texts)))
                future = pool.submit(self._request, [texts[i] for i in positions])
                pending[future] = positions
            with progress_bar(
                total=len(pending), desc=f"OpenAI embeddings ({self.model})", enabled=progress
            ) as bar:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        positions = pending.pop(future)
                        if future.cancelled():
                            continue
                        exc = future.exception()
                        if exc is not None:
                            if error is None:
                                error = exc
                                # Stop sending; requests already in flight still finish and are kept.
                                for other in pending:
                                    other.cancel()
                            continue
                        bar.update(1)
                        yield positions, future.result()
        finally:
            pool.shutdown(wait=error is not None, cancel_futures=True)
        if error is not None:
            raise error
