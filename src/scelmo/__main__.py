"""``python -m scelmo``: the ``scelmo`` command line (see :mod:`scelmo.cli`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def run(argv: Sequence[str] | None = None) -> int:
    """:func:`scelmo.cli.main`, imported here so that Ctrl-C during its imports is one line too.

    Parameters
    ----------
    argv
        What ``scelmo.cli.main`` is given (``None``: the process's own arguments).

    Returns
    -------
    Its exit code, or 130 when interrupted while importing.

    Examples
    --------
    >>> from scelmo.__main__ import run
    >>> run(["--version"])  # doctest: +SKIP
    0
    """
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C while the package is imported
        print("scelmo: interrupted", file=sys.stderr)
        return 130
    return main(argv)


if __name__ == "__main__":
    sys.exit(run())
