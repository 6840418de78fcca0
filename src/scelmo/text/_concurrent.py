"""Requests sent concurrently, with a progress bar over them: what the OpenAI encoder and LLM source share."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from contextlib import closing
from typing import TypeVar

from ._progress import progress_bar
from ._retry import run_concurrently

T = TypeVar("T")
R = TypeVar("R")


def requests_with_progress(
    work: Callable[[T, threading.Event], R],
    items: Sequence[T],
    *,
    max_workers: int,
    name: str,
    desc: str,
    progress: bool,
    unit: str = "batch",
) -> Generator[tuple[int, R], None, None]:
    """:func:`~scelmo.text._retry.run_concurrently`, with a bar that ticks once the caller has taken a result.

    Closing this generator (Ctrl-C, an error of the caller) stops the requests at once, as
    closing ``run_concurrently`` does.

    Examples
    --------
    >>> from scelmo.text._concurrent import requests_with_progress
    >>> runs = requests_with_progress(
    ...     lambda x, stop: x * x, [1, 2, 3], max_workers=2, name="demo", desc="demo", progress=False
    ... )
    >>> sorted(runs)
    [(0, 1), (1, 4), (2, 9)]
    """
    runs = run_concurrently(work, items, max_workers=max_workers, name=name)
    with closing(runs), progress_bar(total=len(items), desc=desc, enabled=progress, unit=unit) as bar:
        for index, result in runs:
            yield index, result
            bar.update(1)
