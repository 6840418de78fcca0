"""Where gene text comes from: NCBI summaries, a chat model, offline tables, or the user.

Every source is a function ``(genes, *, ..., progress) -> (texts, provenance)`` where
``texts`` maps each gene to its text or ``None``. :func:`scelmo.pp.gene_descriptions` picks
one by name and turns the result into a :class:`pandas.Series`.
"""

from collections.abc import Callable
from typing import Any

from ._go import EVIDENCE_RANK, GO_FILES, GOAnnotations, find_go_annotations
from ._llm import SCELMO_GENE_PROMPT, SCELMO_MODEL, llm_descriptions
from ._ncbi import DEFAULT_MYGENE_URL, ncbi_descriptions
from ._offline import format_offline_text, offline_descriptions
from ._user import user_descriptions

#: Source names accepted by :func:`scelmo.pp.gene_descriptions`; the network ones take a cache.
#: Source name -> function(genes, *, progress, ...) -> (texts, provenance).
SOURCES: dict[str, Callable[..., tuple[dict[str, str | None], dict[str, Any]]]] = {
    "offline": offline_descriptions,
    "ncbi": ncbi_descriptions,
    "llm": llm_descriptions,
}
CACHED_SOURCES = frozenset({"ncbi", "llm"})

__all__ = [
    "CACHED_SOURCES",
    "DEFAULT_MYGENE_URL",
    "EVIDENCE_RANK",
    "GO_FILES",
    "SCELMO_GENE_PROMPT",
    "SCELMO_MODEL",
    "SOURCES",
    "GOAnnotations",
    "find_go_annotations",
    "format_offline_text",
    "llm_descriptions",
    "ncbi_descriptions",
    "offline_descriptions",
    "user_descriptions",
]
