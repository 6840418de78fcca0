"""``python -m scelmo``: the ``scelmo`` command line (see :mod:`scelmo.cli`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def run(argv: Sequence[str] | None = None) -> int:
    """Run the ``scelmo`` command line; Ctrl-C while it is still importing is one line, no traceback.

    Parameters
    ----------
    argv
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    The exit code (see :func:`scelmo.cli.main`).

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
