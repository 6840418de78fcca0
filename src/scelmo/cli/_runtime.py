"""How a subcommand runs: one-line errors and warnings, progress and log settings, exit codes."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "CLIError", "one_line", "run_command"]

EXIT_OK = 0
#: A job that failed on its input (missing file, unknown key, no gene overlap, ...).
EXIT_ERROR = 1
#: Wrong command-line usage (argparse's own exit code).
EXIT_USAGE = 2
#: Stopped with Ctrl-C.
EXIT_INTERRUPTED = 130

#: Warning classes shown as one line; the others (deprecations) only with ``--debug``.
_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
#: Exceptions whose message is self-explanatory; others are prefixed with their class name.
_PLAIN = (ValueError, KeyError, LookupError, OSError, ImportError, TypeError, NotImplementedError)


class CLIError(Exception):
    """An error the user can fix from the command line; its message is printed as one line.

    Examples
    --------
    >>> from scelmo.cli._runtime import CLIError
    >>> str(CLIError("input file pbmc.h5ad does not exist"))
    'input file pbmc.h5ad does not exist'
    """


def one_line(text: object) -> str:
    r"""``text`` with every run of whitespace (newlines included) made a single space.

    Examples
    --------
    >>> from scelmo.cli._runtime import one_line
    >>> one_line("Place it at\n    /data/x\nor register it.")
    'Place it at /data/x or register it.'
    """
    return " ".join(str(text).split())


def error_message(err: BaseException) -> str:
    """The one-line message printed for ``err``.

    Parameters
    ----------
    err
        The exception that stopped the command.

    Returns
    -------
    The message, without the ``KeyError`` quotes; the class name is kept for unexpected errors.

    Examples
    --------
    >>> from scelmo.cli._runtime import error_message
    >>> error_message(KeyError("Layer 'counts' not found."))
    "Layer 'counts' not found."
    >>> error_message(ZeroDivisionError("division by zero"))
    'ZeroDivisionError: division by zero'
    """
    message = one_line(err.args[0]) if isinstance(err, KeyError) and err.args else one_line(err)
    if isinstance(err, CLIError):
        return message
    if _is_cache_error(err):
        # The library's advice names Python arguments (cache_dir=, cache=False); give the flag too.
        return f"{message} From the command line: set SCELMO_DATA_DIR to another folder, or pass --no-cache."
    if not message:
        return type(err).__name__
    if not isinstance(err, _PLAIN):
        return f"{type(err).__name__}: {message}"
    return message


def _is_cache_error(err: BaseException) -> bool:
    # Looked up, not imported: the text package is loaded only when a command has used the cache.
    text = sys.modules.get("scelmo.text")
    cache_error = getattr(text, "CacheError", None)
    return cache_error is not None and isinstance(err, cache_error)


class _OneLineFormatter(logging.Formatter):
    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        return f"{self.prog}: {level}{one_line(record.getMessage())}"


@contextlib.contextmanager
def _diagnostics(prog: str, *, verbose: bool, debug: bool) -> Iterator[None]:
    """Warnings as ``PROG: warning: ...`` lines, and scelmo's log (INFO with ``--verbose``) on stderr."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {one_line(message)}", file=sys.stderr)

    logger = logging.getLogger("scelmo")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(prog))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    with warnings.catch_warnings():
        warnings.showwarning = show
        if not debug:
            for category in _HIDDEN_WARNINGS:
                warnings.simplefilter("ignore", category)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = old_propagate


def run_command(args: argparse.Namespace, handler: Callable[[argparse.Namespace], int | None]) -> int:
    """Run a subcommand's ``handler`` and turn whatever stops it into a one-line error and an exit code.

    Parameters
    ----------
    args
        Parsed arguments; ``args.prog`` (e.g. ``"scelmo embed"``), ``args.verbose`` and
        ``args.debug`` are used here.
    handler
        The subcommand; it returns an exit code or ``None`` (success).

    Returns
    -------
    ``0`` on success, ``1`` when the job failed (the message is on stderr as
    ``PROG: error: ...``; with ``--debug`` the traceback comes first), ``130`` when interrupted.
    """
    prog = args.prog
    debug = bool(getattr(args, "debug", False))
    with _diagnostics(prog, verbose=bool(getattr(args, "verbose", False)), debug=debug):
        try:
            code = handler(args)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as err:  # noqa: BLE001 - every failure becomes one line (the traceback with --debug)
            if debug:
                traceback.print_exc()
            print(f"{prog}: error: {error_message(err)}", file=sys.stderr)
            return EXIT_ERROR
    return EXIT_OK if code is None else int(code)
