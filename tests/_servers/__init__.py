"""Local HTTP servers that speak the real protocols of OpenAI and mygene.info, for tests.

They run on 127.0.0.1 in a thread, are driven by the real ``openai`` and ``mygene`` clients,
record every request, and can be told to fail (429 with ``Retry-After``, 500) or to stop
answering after N requests (to test interrupted runs).
"""

from ._base import FakeService
from .mygene_api import MyGeneService, gene_hit
from .openai_api import OpenAIService, fake_chat_answer, fake_embedding

__all__ = ["FakeService", "MyGeneService", "OpenAIService", "fake_chat_answer", "fake_embedding", "gene_hit"]
