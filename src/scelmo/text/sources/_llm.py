"""Gene text written by a chat model (scELMo's way), through any OpenAI-compatible API."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from scelmo.text._cache import TextCache
from scelmo.text._concurrent import requests_with_progress
from scelmo.text._openai import BadAnswer, make_openai_client, public_url, request_json, resolve_base_url
from scelmo.text._retry import RetryPolicy, ServiceError

from ._resume import cached_answers, stopped_run

__all__ = ["SCELMO_GENE_PROMPT", "SCELMO_MODEL", "llm_descriptions"]


def _chat_content(payload: Any, url: str) -> str | None:
    """The first choice's text of a chat completion answer; :class:`BadAnswer` if it has none."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list):
        keys = sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise BadAnswer(f"{url} answered JSON without a 'choices' list (got {keys})")
    if not choices:
        return None
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if content is not None and not isinstance(content, str):
        raise BadAnswer(f"{url} answered a message whose 'content' is a {type(content).__name__}, not text")
    return content


#: The prompt of scELMo (Liu et al. 2023); ``{gene}`` is replaced by the symbol.
SCELMO_GENE_PROMPT = (
    "Please summarize the major function of gene: {gene}. "
    "Use academic language in one paragraph and include pathway information."
)
#: The chat model scELMo used.
SCELMO_MODEL = "gpt-3.5-turbo-1106"


def llm_descriptions(
    genes: Sequence[str],
    *,
    cache: TextCache | None = None,
    prompt: str = SCELMO_GENE_PROMPT,
    model: str = SCELMO_MODEL,
    system_prompt: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    max_concurrency: int = 8,
    max_retries: int = 6,
    backoff: float = 1.0,
    max_backoff: float = 60.0,
    timeout: float = 120.0,
    progress: bool = False,
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Ask a chat model to describe each gene (``client.chat.completions.create``), one request per gene.

    Requests run concurrently (``max_concurrency``) and are retried with exponential backoff
    on 429, 5xx, timeouts, connection errors and answers that are not a chat completion (an
    HTML page, broken JSON), honouring ``Retry-After``. Each answer is cached as soon as it
    arrives, keyed by the model, its settings and the exact prompt, so an interrupted run
    resumes where it stopped and a rerun asks nothing; on Ctrl-C no further request is sent.

    Parameters
    ----------
    genes
        Gene symbols, unique.
    cache
        Where answers are kept (``None``: no cache).
    prompt
        Template with a ``{gene}`` field; default scELMo's.
    model
        Chat model; default scELMo's ``gpt-3.5-turbo-1106``.
    system_prompt
        Optional system message.
    temperature
        Sampling temperature; ``None`` leaves the service default (as scELMo did).
    max_tokens
        Longest answer in tokens (``None``: the service default).
    api_key
        Default ``$OPENAI_API_KEY``.
    base_url
        Any OpenAI-compatible endpoint; default ``$OPENAI_BASE_URL`` or OpenAI's.
    max_concurrency
        Requests in flight at once.
    max_retries, backoff, max_backoff
        Retries of a failed request (see :class:`~scelmo.text.RetryPolicy`).
    timeout
        Seconds per request.
    progress
        Show a progress bar over genes.

    Returns
    -------
    texts
        ``gene -> answer`` (``None`` where the model returned nothing).
    provenance
        How the texts were made (the URL without credentials; never the key).

    Examples
    --------
    >>> from scelmo.text.sources import llm_descriptions
    >>> texts, provenance = llm_descriptions(["CD3E"], model="gpt-4o-mini")  # doctest: +SKIP
    >>> provenance["prompt"]  # doctest: +SKIP
    'Please summarize the major function of gene: {gene}. ...'
    """
    if "{gene}" not in prompt:
        raise ValueError(f"The prompt must contain '{{gene}}' where the gene symbol goes; got {prompt!r}.")
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}.")
    genes = list(dict.fromkeys(genes))
    url = public_url(resolve_base_url(base_url))
    provenance: dict[str, Any] = {
        "llm_model": model,
        "prompt": prompt,
        "system_prompt": system_prompt,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "base_url": url,
    }
    cache_model = f"{model}|temperature={temperature}|max_tokens={max_tokens}|system={system_prompt}|{url}"
    prompts = {gene: prompt.format(gene=gene) for gene in genes}
    texts, todo = cached_answers(cache, "llm", cache_model, prompts, asking=f"{model} ({url})")
    if not todo:
        return texts, provenance
    client = make_openai_client(
        api_key=api_key, base_url=base_url, timeout=timeout, purpose="gene_descriptions(source='llm')"
    )
    settings = {"temperature": temperature, "max_tokens": max_tokens}
    ask = _Asker(
        client,
        model=model,
        system_prompt=system_prompt,
        extra={name: value for name, value in settings.items() if value is not None},
        policy=RetryPolicy(max_retries=max_retries, backoff=backoff, max_backoff=max_backoff),
        endpoint=f"{url}/chat/completions",
    )
    runs = requests_with_progress(
        lambda gene, stop: ask(prompts[gene], gene, stop),
        todo,
        max_workers=max_concurrency,
        name="scelmo-llm",
        desc=f"Gene text from {model}",
        progress=progress,
        unit="gene",
    )
    try:
        with closing(runs):
            for k, answer in runs:
                gene = todo[k]
                texts[gene] = answer
                # An empty answer is not cached: a rerun asks again.
                if cache is not None and answer is not None:
                    cache.put_texts("llm", cache_model, {prompts[gene]: answer})
    except ServiceError as error:
        n_cached = sum(1 for v in texts.values() if v is not None)
        raise stopped_run(error, n_cached=n_cached, n_genes=len(genes), cache=cache) from error
    return texts, provenance


@dataclass(frozen=True)
class _Asker:
    """One chat completion per gene, retried by ``policy``; the stripped answer or ``None``."""

    client: Any
    model: str
    system_prompt: str | None
    extra: dict[str, Any]
    policy: RetryPolicy
    endpoint: str

    def __call__(self, prompt: str, gene: str, stop: threading.Event) -> str | None:
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        content = request_json(
            lambda: self.client.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, **self.extra
            ),
            lambda payload: _chat_content(payload, self.endpoint),
            endpoint=self.endpoint,
            policy=self.policy,
            what=f"chat completion for {gene!r} ({self.model}) from {self.endpoint}",
            stop=stop,
        )
        return content.strip() if content and content.strip() else None
