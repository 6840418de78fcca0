"""Progress bars (tqdm) that cost nothing when switched off."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(*, total: int, desc: str, enabled: bool, unit: str = "batch") -> Any:
    """A tqdm bar; ``enabled=False`` gives a disabled one with the same methods.

    Examples
    --------
    >>> from scelmo.text._progress import progress_bar
    >>> with progress_bar(total=2, desc="demo", enabled=False) as bar:
    ...     bar.update(2)
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled or total == 0, leave=False)
