"""Retries with exponential backoff for calls to web services (OpenAI, mygene.info)."""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .._logging import logger

__all__ = ["RetryPolicy", "ServiceError", "call_with_retries", "parse_retry_after"]

T = TypeVar("T")

#: HTTP status codes worth retrying: timeout, conflict/lock, rate limit, server errors.
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524})


class ServiceError(RuntimeError):
    """A web service call failed for good (retries exhausted, or an error retrying cannot fix).

    Examples
    --------
    >>> from scelmo.text import ServiceError
    >>> issubclass(ServiceError, RuntimeError)
    True
    """


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed request is repeated.

    The n-th retry waits ``min(backoff * 2**(n - 1), max_backoff)`` seconds, less a random
    jitter of up to 25% so that concurrent workers do not retry in lock-step, unless the
    server said how long to wait (``Retry-After`` / ``retry-after-ms``), which is honoured up
    to ``max_retry_after`` seconds.

    Parameters
    ----------
    max_retries
        Retries after the first attempt (0: no retries).
    backoff
        Wait before the first retry, in seconds.
    max_backoff
        Longest computed wait, in seconds.
    max_retry_after
        Longest server-requested wait that is honoured, in seconds; a longer one ends the retries.

    Examples
    --------
    >>> from scelmo.text import RetryPolicy
    >>> policy = RetryPolicy(max_retries=3, backoff=0.5)
    >>> [policy.delay(n, jitter=False) for n in (1, 2, 3)]
    [0.5, 1.0, 2.0]
    """

    max_retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError(
                f"RetryPolicy needs max_retries, backoff and max_backoff >= 0, got {self.max_retries}, "
                f"{self.backoff}, {self.max_backoff}."
            )

    def delay(self, retry: int, *, retry_after: float | None = None, jitter: bool = True) -> float:
        """Seconds to wait before retry number ``retry`` (1-based).

        Parameters
        ----------
        retry
            Which retry this is, starting at 1.
        retry_after
            The server's requested wait in seconds, if it sent one.
        jitter
            Shorten the computed wait by a random 0-25%.

        Returns
        -------
        The wait in seconds.

        Examples
        --------
        >>> from scelmo.text import RetryPolicy
        >>> RetryPolicy(backoff=0.1).delay(1, retry_after=2.0)
        2.0
        """
        if retry_after is not None and 0 <= retry_after <= self.max_retry_after:
            return float(retry_after)
        wait = min(self.backoff * 2.0 ** (retry - 1), self.max_backoff)
        if jitter:
            wait *= 1.0 - 0.25 * random.random()
        return wait


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date.

    Parameters
    ----------
    headers
        Response headers (case-insensitive mapping, as httpx gives).

    Returns
    -------
    The wait in seconds, or ``None`` when the server did not say.

    Examples
    --------
    >>> from scelmo.text._retry import parse_retry_after
    >>> parse_retry_after({"retry-after": "3"}), parse_retry_after({"retry-after-ms": "250"})
    (3.0, 0.25)
    """
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if divisor == 1.0 else None
            if parsed is None:
                continue
            seconds = parsed.timestamp() - time.time()
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


@dataclass(frozen=True)
class Failure:
    """How a caller classifies an exception: retry or not, the server's wait, a short description."""

    retryable: bool
    description: str
    retry_after: float | None = None


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy,
    classify: Callable[[BaseException], Failure | None],
    what: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` and repeat it on retryable failures.

    Parameters
    ----------
    fn
        The request.
    policy
        Number of retries and waits.
    classify
        Maps an exception to a :class:`Failure`, or ``None`` for exceptions that are not
        service failures (those propagate unchanged, for example programming errors).
    what
        Names the request in messages, for example ``"OpenAI embeddings request (64 texts)"``.
    sleep
        The wait function.

    Returns
    -------
    What ``fn`` returned.

    Raises
    ------
    ServiceError
        When a failure is not retryable or the retries are exhausted; chained to the last error.

    Examples
    --------
    >>> from scelmo.text._retry import Failure, RetryPolicy, call_with_retries
    >>> answers = iter([ConnectionError("flaky"), "ok"])
    >>> def request():
    ...     answer = next(answers)
    ...     if isinstance(answer, Exception):
    ...         raise answer
    ...     return answer
    >>> call_with_retries(
    ...     request,
    ...     policy=RetryPolicy(backoff=0.0),
    ...     classify=lambda e: Failure(True, str(e)),
    ...     what="demo",
    ... )
    'ok'
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as err:
            failure = classify(err)
            if failure is None:
                raise
            if not failure.retryable:
                raise ServiceError(f"{what} failed: {failure.description}") from err
            too_long = failure.retry_after is not None and failure.retry_after > policy.max_retry_after
            if attempt > policy.max_retries or too_long:
                hint = (
                    f"the server asked to wait {failure.retry_after:.0f} s, more than max_retry_after"
                    if too_long
                    else f"gave up after {attempt} attempts"
                )
                raise ServiceError(
                    f"{what} failed ({hint}); last error: {failure.description}. "
                    "Wait and rerun (with a cache, finished work is kept), or allow more retries with max_retries=."
                ) from err
            wait = policy.delay(attempt, retry_after=failure.retry_after)
            logger.info(
                "%s: %s; retry %d/%d in %.2f s", what, failure.description, attempt, policy.max_retries, wait
            )
            sleep(wait)
