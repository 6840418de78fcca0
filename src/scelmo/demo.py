"""``python -m scelmo.demo``: the old name of ``scelmo demo`` (see :mod:`scelmo.cli._demo`).

Deprecated: run ``scelmo demo`` (or ``python -m scelmo demo``), which takes the same options.
"""

from __future__ import annotations

import sys
import warnings


def main(argv: list[str] | None = None) -> int:
    """Run ``scelmo demo`` with ``argv``, after a :class:`DeprecationWarning`.

    Parameters
    ----------
    argv
        The options of ``scelmo demo``; default ``sys.argv[1:]``.

    Returns
    -------
    The exit code of ``scelmo demo``.

    Examples
    --------
    >>> from scelmo.demo import main
    >>> main(["--out", "scelmo_demo"])  # doctest: +SKIP
    0
    """
    warnings.warn(
        "`python -m scelmo.demo` is deprecated; run `scelmo demo` (or `python -m scelmo demo`) instead.",
        DeprecationWarning,
        stacklevel=2,
    )
    from .__main__ import run

    return run(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
