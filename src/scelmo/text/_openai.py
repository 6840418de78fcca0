"""The OpenAI client, shared by the embedding encoder and the LLM text source."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from scelmo._optional import import_optional

from ._retry import RETRY_STATUS, Failure, RetryPolicy, call_with_retries

__all__ = [
    "DEFAULT_OPENAI_URL",
    "BadAnswer",
    "classify_openai_error",
    "make_openai_client",
    "public_url",
    "read_json",
    "request_json",
    "resolve_base_url",
]

R = TypeVar("R")

DEFAULT_OPENAI_URL = "https://api.openai.com/v1"


def resolve_base_url(base_url: str | None) -> str:
    """The URL requests go to: the argument, else ``$OPENAI_BASE_URL``, else OpenAI's."""
    return (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_URL).rstrip("/")


def public_url(url: str) -> str:
    """``url`` without credentials, query or fragment: safe to record in provenance.

    Examples
    --------
    >>> from scelmo.text._openai import public_url
    >>> public_url("https://user:secret@example.org/v1?key=abc")
    'https://example.org/v1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class BadAnswer(Exception):
    """A successful HTTP answer whose content is not what the OpenAI format promises.

    Treated as a failed request: retried, then reported with the URL and what came back.
    """


def _snippet(text: str, limit: int = 80) -> str:
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


def read_json(raw: Any, url: str) -> Any:
    """The JSON body of a raw ``openai`` response (``.with_raw_response``), or :class:`BadAnswer`.

    Parameters
    ----------
    raw
        The client's raw response object (it has ``http_response``, an ``httpx.Response``).
    url
        The endpoint, without credentials, named in the error.

    Raises
    ------
    BadAnswer
        For an HTML page, an empty body or a body that is not JSON, saying which.
    """
    response = raw.http_response
    status = response.status_code
    content_type = response.headers.get("content-type", "no content-type")
    text = response.text
    if not text.strip():
        raise BadAnswer(f"{url} answered an empty body (status {status}, {content_type})")
    if "html" in content_type.lower() or text.lstrip()[:1] == "<":
        raise BadAnswer(f"{url} answered an HTML page (status {status}, {content_type}): {_snippet(text)}")
    try:
        return json.loads(text)
    except ValueError:
        raise BadAnswer(
            f"{url} answered a body that is not JSON (status {status}, {content_type}): {_snippet(text)}"
        ) from None


def request_json(
    create: Callable[[], Any],
    parse: Callable[[Any], R],
    *,
    endpoint: str,
    policy: RetryPolicy,
    what: str,
    stop: threading.Event | None = None,
) -> R:
    """One request of the ``openai`` client, read raw and parsed here, retried by ``policy``.

    The raw answer is read by :func:`read_json` (the client's own parsing turns an HTML page or
    broken JSON into errors that do not say what came back), then by ``parse``; either one's
    :class:`BadAnswer`, and the failures :func:`classify_openai_error` calls worth it, are retried.

    Parameters
    ----------
    create
        Sends the request: ``client.<endpoint>.with_raw_response.create(...)``.
    parse
        Turns the JSON answer into the result; raises :class:`BadAnswer` for a wrong one.
    endpoint
        The URL, without credentials, named in errors.
    policy
        Retries and backoff.
    what
        The request, for the error after the last retry.
    stop
        A ``threading.Event`` that ends the retries (see :func:`~scelmo.text._retry.call_with_retries`).

    Returns
    -------
    What ``parse`` returned.
    """
    return call_with_retries(
        lambda: parse(read_json(create(), endpoint)),
        policy=policy,
        classify=classify_openai_error,
        what=what,
        stop=stop,
    )


def make_openai_client(*, api_key: str | None, base_url: str | None, timeout: float, purpose: str) -> Any:
    """An ``openai.OpenAI`` client with its own retries off (we retry, with our policy).

    Raises
    ------
    ValueError
        When there is no API key.
    """
    openai = import_optional("openai", purpose=purpose)
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ValueError(
            f"{purpose} needs an OpenAI API key: pass api_key=... or set the OPENAI_API_KEY environment "
            "variable. (A local OpenAI-compatible server that ignores keys still needs some string.)"
        )
    return openai.OpenAI(api_key=key, base_url=resolve_base_url(base_url), max_retries=0, timeout=timeout)


def classify_openai_error(err: BaseException) -> Failure | None:
    """Which errors are worth retrying: 429, 5xx, timeouts, connection errors, answers in another format."""
    import openai

    if isinstance(err, BadAnswer):
        return Failure(True, str(err))
    if isinstance(err, openai.APIStatusError):
        from ._retry import parse_retry_after

        status = err.status_code
        description = f"HTTP {status}: {err.message}"
        if status == 401:
            description += " (check the API key)"
        elif status == 404:
            description += " (check the model name and base_url)"
        return Failure(status in RETRY_STATUS, description, parse_retry_after(err.response.headers))
    if isinstance(err, openai.APIConnectionError):
        return Failure(True, f"{type(err).__name__}: {err}")
    return None
