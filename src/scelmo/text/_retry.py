"""Calls to web services (OpenAI, mygene.info): retries with exponential backoff, run concurrently, stoppable."""

from __future__ import annotations

import email.utils
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from scelmo._logging import logger

__all__ = [
    "Cancelled",
    "RetryPolicy",
    "ServiceError",
    "call_with_retries",
    "parse_retry_after",
    "run_concurrently",
]

T = TypeVar("T")
R = TypeVar("R")

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


class Cancelled(Exception):
    """A request that was not sent (again) because the caller stopped: Ctrl-C, or another request failed."""


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
    stop: threading.Event | None = None,
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
        The wait function (when there is no ``stop``).
    stop
        When set, no further attempt is made: :class:`Cancelled` is raised before the next
        attempt, and a wait between attempts ends at once.

    Returns
    -------
    What ``fn`` returned.

    Raises
    ------
    ServiceError
        When a failure is not retryable or the retries are exhausted; chained to the last error.
    Cancelled
        When ``stop`` was set before an attempt.

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
        if stop is not None and stop.is_set():
            raise Cancelled(what)
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
            if stop is None:
                sleep(wait)
            elif stop.wait(wait):
                raise Cancelled(what) from err


_DONE, _FAILED, _CANCELLED = "done", "failed", "cancelled"


def run_concurrently(
    work: Callable[[T, threading.Event], R], items: Sequence[T], *, max_workers: int, name: str
) -> Generator[tuple[int, R], None, None]:
    """Run ``work(item, stop)`` for every item on ``max_workers`` threads; yield results as they finish.

    ``work`` gets a ``stop`` event to pass to :func:`call_with_retries`. When an item fails,
    ``stop`` is set: no new request is started and retries end, the items already in flight
    are finished and yielded, then the failure is raised. When the caller stops iterating
    (Ctrl-C while waiting, an error of its own, or closing the generator), ``stop`` is set and
    the generator returns at once: the threads are daemon threads, so a request still in
    flight neither delays the caller nor the exit of the interpreter (its answer is dropped).

    Parameters
    ----------
    work
        The request for one item.
    items
        What to request.
    max_workers
        Requests in flight at once.
    name
        Prefix of the thread names.

    Yields
    ------
    index
        Position of the item in ``items``.
    result
        What ``work`` returned for it.

    Examples
    --------
    >>> from scelmo.text._retry import run_concurrently
    >>> sorted(run_concurrently(lambda x, stop: x * x, [1, 2, 3], max_workers=2, name="demo"))
    [(0, 1), (1, 4), (2, 9)]
    """
    stop = threading.Event()
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(items)):
        todo.put(index)
    results: queue.Queue[tuple[int, str, object]] = queue.Queue()

    def worker() -> None:
        while True:
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            if stop.is_set():
                results.put((index, _CANCELLED, None))
                continue
            try:
                value = work(items[index], stop)
            except Cancelled:
                results.put((index, _CANCELLED, None))
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                results.put((index, _FAILED, err))
            else:
                results.put((index, _DONE, value))

    for number in range(min(max_workers, len(items))):
        threading.Thread(target=worker, name=f"{name}-{number}", daemon=True).start()
    error: BaseException | None = None
    try:
        for _ in range(len(items)):
            index, status, value = results.get()
            if status == _FAILED:
                if error is None:
                    error = value  # type: ignore[assignment]
                    stop.set()
            elif status == _DONE:
                yield index, value  # type: ignore[misc]
    finally:
        stop.set()
    if error is not None:
        raise error
