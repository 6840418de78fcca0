"""A disk cache around any text encoder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Generator, Sequence
from contextlib import closing
from typing import Any

import numpy as np

from scelmo._logging import logger
from scelmo.text._cache import TextCache, resolve_cache
from scelmo.text._retry import ServiceError

from ._base import TextEncoder, check_texts

__all__ = ["CachedEncoder"]


class CachedEncoder(TextEncoder):
    """Look texts up in a :class:`~scelmo.text.TextCache` first; encode and store only the rest.

    Vectors are keyed by ``(encoder.name, encoder.cache_model, sha256(text))``. Each batch is
    committed as soon as the wrapped encoder yields it, so an interrupted run keeps what was
    finished and the next run encodes only what is missing. Identical texts are encoded once.
    Cached entries that fail their check (see :meth:`~scelmo.text.TextCache.get_vectors`) are
    encoded again and replaced; new vectors of another size than the cached ones stop the run
    with an error that says how to remove the old ones.

    Parameters
    ----------
    encoder
        The encoder to wrap.
    cache
        ``True``: the default cache (``data_dir()/cache``, or ``cache_dir``); a folder or
        SQLite path; or a :class:`~scelmo.text.TextCache`.
    cache_dir
        Folder of the cache when ``cache=True``.

    Examples
    --------
    >>> import tempfile
    >>> from scelmo.text import CachedEncoder, LocalEncoder
    >>> encoder = CachedEncoder(LocalEncoder(), cache=tempfile.mkdtemp())
    >>> first = encoder.encode(["T cell receptor"])  # doctest: +SKIP
    >>> second = encoder.encode(["T cell receptor"])  # doctest: +SKIP
    >>> encoder.last_stats  # doctest: +SKIP
    {'texts': 1, 'unique': 1, 'cached': 1, 'encoded': 0}
    """

    #: The wrapped encoder (never itself a CachedEncoder).
    encoder: TextEncoder

    def __init__(
        self,
        encoder: TextEncoder,
        cache: bool | str | os.PathLike | TextCache = True,
        *,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if isinstance(encoder, CachedEncoder):
            encoder = encoder.encoder
        resolved = resolve_cache(cache, cache_dir)
        if resolved is None:
            raise ValueError("CachedEncoder needs a cache: pass cache=True, a folder, or a TextCache.")
        self.encoder = encoder
        self.cache = resolved
        self.name = encoder.name
        self.model = encoder.model
        self.batch_size = encoder.batch_size
        self.last_stats: dict[str, int] = {}

    @property
    def dim(self) -> int | None:
        """The wrapped encoder's dimension."""
        return self.encoder.dim

    @property
    def cache_model(self) -> str:
        """The wrapped encoder's cache key."""
        return self.encoder.cache_model

    def params(self) -> dict[str, Any]:
        """The wrapped encoder's settings.

        Examples
        --------
        >>> import tempfile
        >>> from scelmo.text import CachedEncoder, OpenAIEncoder
        >>> CachedEncoder(OpenAIEncoder(api_key="x"), cache=tempfile.mkdtemp()).params()["encoder"]
        'openai'
        """
        return self.encoder.params()

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, cache={self.cache!r})"

    def encode_batches(
        self, texts: Sequence[str], *, progress: bool = False
    ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """Yield cached vectors first, then each newly encoded batch after storing it.

        Examples
        --------
        >>> import tempfile
        >>> from scelmo.text import CachedEncoder, LocalEncoder
        >>> encoder = CachedEncoder(LocalEncoder(), cache=tempfile.mkdtemp())
        >>> sum(len(p) for p, _ in encoder.encode_batches(["a", "a", "b"]))  # doctest: +SKIP
        3
        """
        texts = check_texts(texts)
        distinct, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        unique = [str(t) for t in distinct]
        # Positions in `texts` of each unique text, so a vector is written to all its duplicates.
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
        positions_of = np.split(order, bounds) if len(texts) else []

        def expand(unique_idx: Sequence[int], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            groups = [positions_of[u] for u in unique_idx]
            counts = [len(g) for g in groups]
            return np.concatenate(groups), np.repeat(vectors, counts, axis=0)

        name, model = self.encoder.name, self.encoder.cache_model
        size = self._settle_size(name, model)
        found = self.cache.get_vectors(name, model, unique)
        self.last_stats = {"texts": len(texts), "unique": len(unique), "cached": len(found), "encoded": 0}
        if found:
            hit_idx = [i for i, t in enumerate(unique) if t in found]
            yield expand(hit_idx, np.stack([found[unique[i]] for i in hit_idx]))
        missing_idx = [i for i, t in enumerate(unique) if t not in found]
        if not missing_idx:
            logger.info("all %d texts found in the cache %s", len(unique), self.cache.path)
            return
        logger.info(
            "%d of %d texts found in the cache; encoding %d with %s",
            len(found),
            len(unique),
            len(missing_idx),
            self.encoder,
        )
        missing_texts = [unique[i] for i in missing_idx]
        done = 0
        try:
            # closing(): on Ctrl-C or an error here, the encoder stops its requests at once.
            with closing(self.encoder.encode_batches(missing_texts, progress=progress)) as batches:
                for local_positions, vectors in batches:
                    vectors = np.asarray(vectors, dtype=np.float32)
                    if size is not None and vectors.shape[1] != size:
                        raise RuntimeError(
                            f"{self.encoder} answered {vectors.shape[1]}-d vectors, but the cache "
                            f"{self.cache.path} holds {size}-d vectors for encoder {name!r}, model {model!r}. "
                            "If the model behind it changed, remove the old vectors (other cached answers "
                            f"are kept): TextCache({str(self.cache.path)!r}).forget(encoder={name!r}, "
                            f"model={model!r}); otherwise check the encoder's settings."
                        )
                    size = vectors.shape[1]
                    batch_texts = [missing_texts[p] for p in local_positions]
                    self.cache.put_vectors(name, model, batch_texts, vectors)
                    done += len(batch_texts)
                    self.last_stats["encoded"] = done
                    yield expand([missing_idx[p] for p in local_positions], vectors)
        except ServiceError as err:
            cached = len(found) + done
            raise ServiceError(
                f"{err}\n{cached} of {len(unique)} texts are already cached in {self.cache.path}; "
                f"a rerun encodes only the other {len(unique) - cached}."
            ) from err

    def _settle_size(self, name: str, model: str) -> int | None:
        """The size of the cached vectors of this encoder; removes those of other sizes.

        Files of schema version 1 could hold several sizes for one encoder and model (a
        server that changed sizes between batches). The size the encoder announces wins,
        else the most common one; the others are removed (and encoded again when needed).
        """
        sizes = self.cache.dims(name, model)
        if len(sizes) <= 1:
            return next(iter(sizes), None)
        ranked = sorted(sizes.items(), key=lambda item: -item[1])
        keep = self.encoder.dim if self.encoder.dim in sizes else ranked[0][0]
        if keep != self.encoder.dim and ranked[0][1] == ranked[1][1]:
            raise RuntimeError(
                f"The cache {self.cache.path} holds as many {ranked[0][0]}-d as {ranked[1][0]}-d vectors for "
                f"encoder {name!r}, model {model!r}, and the encoder does not say its size. Remove the wrong "
                f"ones with TextCache({str(self.cache.path)!r}).forget(encoder={name!r}, model={model!r}, "
                "dim=<the wrong size>)."
            )
        for dim, n in sizes.items():
            if dim != keep:
                self.cache.forget(encoder=name, model=model, dim=dim)
                warnings.warn(
                    f"{n} cached vectors of size {dim} in {self.cache.path} (encoder {name!r}, model {model!r}) "
                    f"disagree with the {sizes[keep]} of size {keep}; they were removed and are encoded again "
                    "when needed.",
                    UserWarning,
                    stacklevel=3,
                )
        return keep
