"""The interface every text encoder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from contextlib import closing
from typing import Any

import numpy as np

__all__ = ["TextEncoder", "check_texts"]


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """Validate the input of :meth:`TextEncoder.encode` and return it as a list.

    Parameters
    ----------
    texts
        The texts.

    Returns
    -------
    The texts as a list of ``str``.

    Examples
    --------
    >>> from scelmo.text.encoders import check_texts
    >>> check_texts(("a", "b"))
    ['a', 'b']
    """
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of texts; wrap a single text in a list: encode([text]).")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(
                f"Text {i} is a {type(text).__name__}, not a str: drop missing descriptions (NaN) before encoding."
            )
    return texts


class TextEncoder(ABC):
    """Turns texts into vectors.

    Subclasses implement :meth:`encode_batches`, which yields finished batches (in any
    order) so that callers can store each batch as soon as it is done; :meth:`encode` puts
    them back into input order.

    Attributes
    ----------
    name
        The encoder family, for example ``"openai"`` or ``"sentence-transformers"``.
    model
        The model name or path.
    batch_size
        Texts per batch.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.text import TextEncoder
    >>> class Lengths(TextEncoder):
    ...     name, model, batch_size = "demo", "length", 2
    ...     dim = 1
    ...     def encode_batches(self, texts, *, progress=False):
    ...         for start in range(0, len(texts), self.batch_size):
    ...             idx = np.arange(start, min(start + self.batch_size, len(texts)))
    ...             yield idx, np.array([[len(texts[i])] for i in idx], dtype=np.float32)
    >>> Lengths().encode(["a", "bbb", "cc"]).ravel()
    array([1., 3., 2.], dtype=float32)
    """

    name: str = "encoder"
    model: str = ""
    batch_size: int = 64

    @property
    def dim(self) -> int | None:
        """Embedding dimension, or ``None`` when it is only known after the first call."""
        return None

    @property
    def cache_model(self) -> str:
        """The model plus every option that changes the vectors: the cache key's model part."""
        return self.model

    def params(self) -> dict[str, Any]:
        """JSON-serialisable settings recorded in provenance (never secrets)."""
        return {"encoder": self.name, "model": self.model}

    @abstractmethod
    def encode_batches(
        self, texts: Sequence[str], *, progress: bool = False
    ) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
        """Encode ``texts`` batch by batch.

        Parameters
        ----------
        texts
            The texts (validated by :func:`check_texts`).
        progress
            Show a progress bar over batches.

        Yields
        ------
        positions
            Integer positions into ``texts`` of this batch.
        vectors
            ``(len(positions), dim)`` float32 array.
        """

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed texts.

        Parameters
        ----------
        texts
            The texts to embed.
        progress
            Show a progress bar over batches.

        Returns
        -------
        ``(len(texts), dim)`` float32 array, rows in input order.

        Examples
        --------
        >>> from scelmo.text import get_encoder
        >>> encoder = get_encoder("local")  # doctest: +SKIP
        >>> encoder.encode(["T cell receptor", "hemoglobin"]).shape  # doctest: +SKIP
        (2, 384)
        """
        texts = check_texts(texts)
        out: np.ndarray | None = None
        filled = np.zeros(len(texts), dtype=bool)
        # closing(): on Ctrl-C or an error, the encoder's requests stop at once, not at garbage collection.
        with closing(self.encode_batches(texts, progress=progress)) as batches:
            for positions, vectors in batches:
                if out is None:
                    out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
                elif vectors.shape[1] != out.shape[1]:
                    raise RuntimeError(
                        f"{self!r} returned vectors of {vectors.shape[1]} values after vectors of {out.shape[1]}."
                    )
                out[positions] = vectors
                filled[positions] = True
        if out is None:
            return np.empty((0, self.dim or 0), dtype=np.float32)
        if not filled.all():
            raise RuntimeError(f"{type(self).__name__} returned no vector for {int((~filled).sum())} texts.")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"
