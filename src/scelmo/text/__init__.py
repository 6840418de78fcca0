"""Gene and cell-type text sources and text encoders.

- :mod:`scelmo.text.sources`: gene text from NCBI (mygene.info), a chat model (OpenAI API),
  offline tables (HGNC names, Gene Ontology terms) or the user;
- :mod:`scelmo.text.encoders`: text -> vector with a local model or the OpenAI API;
- :class:`TextCache`: every service and model answer kept on disk, so reruns resume.

Optional dependencies (openai, mygene, torch, transformers, sentence-transformers) are
imported only when used.
"""

from . import encoders, sources
from ._cache import CacheError, TextCache, default_cache_dir, resolve_cache
from ._retry import RetryPolicy, ServiceError
from .encoders import (
    CachedEncoder,
    LocalEncoder,
    OpenAIEncoder,
    TextEncoder,
    bundled_model_path,
    get_encoder,
)

__all__ = [
    "CacheError",
    "CachedEncoder",
    "LocalEncoder",
    "OpenAIEncoder",
    "RetryPolicy",
    "ServiceError",
    "TextCache",
    "TextEncoder",
    "bundled_model_path",
    "default_cache_dir",
    "encoders",
    "get_encoder",
    "resolve_cache",
    "sources",
]
