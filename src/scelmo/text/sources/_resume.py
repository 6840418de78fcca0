"""Resumable lookups of the network sources: answers already cached, and where a stopped run stands."""

from __future__ import annotations

from collections.abc import Mapping

from scelmo._logging import logger
from scelmo.text._cache import TextCache
from scelmo.text._retry import ServiceError


def cached_answers(
    cache: TextCache | None, source: str, model: str, keys: Mapping[str, str], *, asking: str
) -> tuple[dict[str, str | None], list[str]]:
    """The answers ``cache`` holds and the genes still to ask, logging what is left.

    Parameters
    ----------
    cache
        The cache, or ``None`` (nothing is cached).
    source, model
        The cache entry, as in :meth:`~scelmo.text.TextCache.get_texts`.
    keys
        ``gene -> cache key`` (the gene itself, or the exact prompt asked about it).
    asking
        Who is asked for the rest, for the log line.

    Returns
    -------
    texts
        ``gene -> answer`` for the genes found, in the order of ``keys``.
    todo
        The other genes, in the order of ``keys``.
    """
    cached = cache.get_texts(source, model, keys.values()) if cache is not None else {}
    texts: dict[str, str | None] = {gene: cached[key] for gene, key in keys.items() if key in cached}
    todo = [gene for gene in keys if gene not in texts]
    if todo:
        logger.info(
            "%s: %d of %d genes cached; asking %s for %d", source, len(texts), len(keys), asking, len(todo)
        )
    return texts, todo


def stopped_run(error: ServiceError, *, n_cached: int, n_genes: int, cache: TextCache | None) -> ServiceError:
    """``error`` with what a rerun will find: how many genes' answers are cached, and where."""
    if cache is None:
        kept = f"{n_cached} of {n_genes} genes were answered but not kept (no cache: pass cache=True to keep them)."
    else:
        kept = (
            f"{n_cached} of {n_genes} genes' answers are already cached in {cache.path}; "
            f"a rerun asks only for the other {n_genes - n_cached}."
        )
    return ServiceError(f"{error}\n{kept}")
