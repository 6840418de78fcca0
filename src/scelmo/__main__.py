"""``python -m scelmo``: the ``scelmo`` command line (see :mod:`scelmo.cli`)."""

import sys

if __name__ == "__main__":
    try:
        from .cli import main
    except KeyboardInterrupt:  # Ctrl-C while the package is imported: one line, no traceback
        print("scelmo: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(main())
