"""NCBI gene summaries (what GenePT embeds), looked up by symbol through mygene.info."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from scelmo._optional import import_optional
from scelmo.text._cache import TextCache
from scelmo.text._openai import public_url
from scelmo.text._progress import progress_bar
from scelmo.text._retry import (
    RETRY_STATUS,
    Failure,
    RetryPolicy,
    ServiceError,
    call_with_retries,
    parse_retry_after,
)

from ._resume import cached_answers, stopped_run

__all__ = ["DEFAULT_MYGENE_URL", "ncbi_descriptions"]

DEFAULT_MYGENE_URL = "https://mygene.info/v3"
#: mygene.info accepts at most 1000 terms per POST query.
_MAX_BATCH = 1000
_FIELDS = "symbol,name,summary,entrezgene"


def _classify(err: BaseException) -> Failure | None:
    import httpx

    if isinstance(err, httpx.HTTPStatusError):
        status = err.response.status_code
        return Failure(
            status in RETRY_STATUS,
            f"HTTP {status} from {public_url(str(err.request.url))}",
            parse_retry_after(err.response.headers),
        )
    if isinstance(err, httpx.TransportError):
        return Failure(True, f"{type(err).__name__}: {err}")
    if isinstance(err, json.JSONDecodeError):
        # A proxy's HTML error page or a cut-off answer: worth another try.
        return Failure(True, f"malformed answer: {err}")
    return None


def _best_hit(query: str, hits: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Among several hits for one symbol, the one whose symbol matches exactly, then the best score."""
    found = [h for h in hits if not h.get("notfound")]
    if not found:
        return None
    # max() keeps the first of equal keys, i.e. the server's order (by score) breaks ties.
    return max(found, key=lambda h: (h.get("symbol") == query, float(h.get("_score") or 0.0)))


def ncbi_descriptions(
    genes: Sequence[str],
    *,
    cache: TextCache | None = None,
    url: str = DEFAULT_MYGENE_URL,
    species: str = "human",
    scopes: str = "symbol",
    batch_size: int = _MAX_BATCH,
    request_delay: float = 1.0,
    max_retries: int = 6,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    timeout: float = 120.0,
    progress: bool = False,
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """NCBI RefSeq gene summaries from mygene.info (GenePT's gene text).

    Uses the ``mygene`` client's ``querymany`` (POST ``{url}/query``) with
    ``fields="symbol,name,summary,entrezgene"``, in batches of up to 1000 symbols. When a
    symbol has several hits, the one whose symbol matches exactly is taken, then the best
    score. Every answer is cached, including "no summary", so a rerun sends nothing for
    genes already looked up; a failed batch is retried with exponential backoff.

    Parameters
    ----------
    genes
        Gene symbols, unique.
    cache
        Where answers are kept (``None``: no cache).
    url
        The mygene.info API root; change it for a mirror or a test server.
    species
        mygene's species filter.
    scopes
        Fields the query terms are matched against (``"symbol"``; ``"symbol,alias"`` for more hits).
    batch_size
        Symbols per request (at most 1000).
    request_delay
        Seconds between requests, to be polite to the free service.
    max_retries, backoff, max_backoff
        Retries of a failed request (see :class:`~scelmo.text.RetryPolicy`).
    timeout
        Seconds per request.
    progress
        Show a progress bar over batches.

    Returns
    -------
    texts
        ``gene -> summary`` (``None`` where mygene has no summary or no gene).
    provenance
        How the texts were made.

    Examples
    --------
    >>> from scelmo.text.sources import ncbi_descriptions
    >>> texts, _ = ncbi_descriptions(["CD3E"])  # doctest: +SKIP
    >>> texts["CD3E"][:40]  # doctest: +SKIP
    'The protein encoded by this gene is the '
    """
    if not 1 <= batch_size <= _MAX_BATCH:
        raise ValueError(
            f"batch_size must be between 1 and {_MAX_BATCH} (mygene.info's limit), got {batch_size}."
        )
    genes = list(dict.fromkeys(genes))
    url = url.rstrip("/")
    cache_model = f"mygene|species={species}|scopes={scopes}"
    if url != DEFAULT_MYGENE_URL:
        cache_model += f"|{public_url(url)}"
    provenance: dict[str, Any] = {
        "service": "mygene.info",
        "url": public_url(url),
        "species": species,
        "scopes": scopes,
        "field": "summary",
    }
    texts, todo = cached_answers(cache, "ncbi", cache_model, {g: g for g in genes}, asking=public_url(url))
    if not todo:
        return texts, provenance
    client = _client(url, timeout)
    policy = RetryPolicy(max_retries=max_retries, backoff=backoff, max_backoff=max_backoff)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    try:
        with progress_bar(total=len(batches), desc="NCBI gene summaries", enabled=progress) as bar:
            for number, batch in enumerate(batches):
                if number and request_delay:
                    time.sleep(request_delay)
                try:
                    hits = call_with_retries(
                        partial(
                            client.querymany,
                            batch,
                            scopes=scopes,
                            fields=_FIELDS,
                            species=species,
                            verbose=False,
                        ),
                        policy=policy,
                        classify=_classify,
                        what=f"mygene.info query ({len(batch)} genes)",
                    )
                except ServiceError as err:
                    n_cached = len(genes) - len(todo) + number * batch_size
                    raise stopped_run(err, n_cached=n_cached, n_genes=len(genes), cache=cache) from err
                answers = _summaries(batch, hits)
                if cache is not None:
                    cache.put_texts("ncbi", cache_model, answers)
                texts.update(answers)
                bar.update(1)
    finally:
        client.http_client.close()
    return texts, provenance


def _client(url: str, timeout: float) -> Any:
    """A ``mygene.MyGeneInfo`` for ``url`` that never waits by itself and gives up after ``timeout``."""
    mygene = import_optional("mygene", purpose="gene_descriptions(source='ncbi')")
    import httpx

    client = mygene.MyGeneInfo()
    # MyGeneInfo() takes no URL (its base class does); the attribute is the documented way.
    client.url = url
    # The client's own pause after each batch would also delay single-batch calls; we pause
    # between our batches instead. Its HTTP client has no timeout by default.
    client.delay = 0
    client.http_client = httpx.Client(timeout=httpx.Timeout(timeout))
    client.http_client_setup = True
    return client


def _summaries(batch: list[str], hits: list[dict[str, Any]]) -> dict[str, str | None]:
    """``gene -> summary`` of one batch (``None``: no gene or no summary), from its hits."""
    by_query: dict[str, list[dict[str, Any]]] = {}
    for hit in hits:
        by_query.setdefault(str(hit.get("query")), []).append(hit)
    answers: dict[str, str | None] = {}
    for gene in batch:
        best = _best_hit(gene, by_query.get(gene, []))
        summary = best.get("summary") if best else None
        answers[gene] = summary.strip() if isinstance(summary, str) and summary.strip() else None
    return answers
