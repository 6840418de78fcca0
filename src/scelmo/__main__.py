"""``python -m scelmo``: the ``scelmo`` command line (see :mod:`scelmo.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
