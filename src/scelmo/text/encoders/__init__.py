"""Text encoders: one interface (``encode(texts) -> float32 (n, d)``) over local models and OpenAI."""

from ._base import TextEncoder, check_texts
from ._cached import CachedEncoder
from ._factory import get_encoder
from ._local import DEFAULT_LOCAL_MODEL, LocalEncoder, bundled_model_path
from ._openai import OpenAIEncoder

__all__ = [
    "DEFAULT_LOCAL_MODEL",
    "CachedEncoder",
    "LocalEncoder",
    "OpenAIEncoder",
    "TextEncoder",
    "bundled_model_path",
    "check_texts",
    "get_encoder",
]
