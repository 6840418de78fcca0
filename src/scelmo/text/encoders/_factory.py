"""Encoders by name: ``"local"``, ``"openai"``, ``"openai:<model>"``, a model folder, or an instance."""

from __future__ import annotations

import os
from typing import Any

from ._base import TextEncoder
from ._local import LocalEncoder
from ._openai import OpenAIEncoder

__all__ = ["get_encoder"]


def get_encoder(encoder: str | os.PathLike | TextEncoder = "local", **kwargs: Any) -> TextEncoder:
    """Create a text encoder from a short description.

    Parameters
    ----------
    encoder
        - ``"local"``: :class:`~scelmo.text.LocalEncoder` with the bundled all-MiniLM-L6-v2
          (offline, 384-d);
        - ``"openai"``: :class:`~scelmo.text.OpenAIEncoder` with ``text-embedding-ada-002``
          (GenePT / scELMo); ``"openai:<model>"`` for another model, e.g.
          ``"openai:text-embedding-3-large"``;
        - a model folder or sentence-transformers name: :class:`~scelmo.text.LocalEncoder` on it;
        - a :class:`~scelmo.text.TextEncoder`: returned as it is.
    **kwargs
        Passed to the encoder class (for example ``batch_size=``, ``device=``, ``api_key=``).

    Returns
    -------
    The encoder (not cached; see :class:`~scelmo.text.CachedEncoder`).

    Examples
    --------
    >>> from scelmo.text import get_encoder
    >>> get_encoder("openai:text-embedding-3-small", api_key="sk-...").model
    'text-embedding-3-small'
    >>> get_encoder("local").name
    'sentence-transformers'
    """
    if isinstance(encoder, TextEncoder):
        if kwargs:
            raise TypeError(
                f"Options {sorted(kwargs)} cannot be applied to an encoder instance; set them when creating it."
            )
        return encoder
    if not isinstance(encoder, str | os.PathLike):
        raise TypeError(
            f"encoder must be 'local', 'openai', 'openai:<model>', a model folder or a TextEncoder, "
            f"not {type(encoder).__name__}."
        )
    spec = os.fspath(encoder)
    if spec == "local":
        return LocalEncoder(**kwargs)
    if spec == "openai":
        return OpenAIEncoder(**kwargs)
    if spec.startswith("openai:"):
        model = spec.removeprefix("openai:")
        if not model:
            raise ValueError(
                "'openai:' needs a model name after the colon, e.g. 'openai:text-embedding-3-small'."
            )
        return OpenAIEncoder(model, **kwargs)
    return LocalEncoder(spec, **kwargs)
