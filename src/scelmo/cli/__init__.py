"""The ``scelmo`` command line: the main jobs of the package on ``.h5ad`` files, without Python.

``scelmo embed`` (cell embeddings), ``scelmo annotate`` (zero-shot or kNN labels),
``scelmo build-genes`` (gene tables), ``scelmo fetch`` (registry data), ``scelmo info`` and
``scelmo demo`` (the offline quick start).
Each subcommand reads its inputs read-only, checks them before any work, writes its output to a
temporary file renamed into place on success, and reports a failure as one line on stderr
(``scelmo embed: error: ...``) with exit code 1 (the traceback with ``--debug``). Ctrl-C, while
the program is still importing or while it works, ends it with the line ``scelmo: interrupted``
and exit code 130; SIGTERM while it writes an output removes the partial file (exit code 143).
``python -m scelmo`` is the same program.

This module imports only the standard library: the subcommands, and the scientific libraries
they need, are imported inside :func:`main`, where an interrupt is caught.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ._common import message_options
from ._runtime import EXIT_INTERRUPTED, EXIT_USAGE, run_command

__all__ = ["build_parser", "main"]

#: The subcommands' modules, in the order ``--help`` lists them.
_COMMANDS = ("_embed", "_annotate", "_build_genes", "_fetch", "_info", "_demo")

DESCRIPTION = """\
Language-model embeddings for single-cell data (scELMo / GenePT, LangCell) on .h5ad files.
Run `scelmo COMMAND --help` for a command's options and examples."""

EPILOG = """\
examples:
  scelmo build-genes pbmc.h5ad --use-raw -o pbmc_genes.npz      # gene table from offline gene text
  scelmo embed pbmc.h5ad -o pbmc_elmo.h5ad --genes pbmc_genes.npz  # cells -> obsm['X_elmo']
  scelmo annotate pbmc_elmo.h5ad -o pbmc_labels.h5ad --genes pbmc_genes.npz \\
      --labels "B cell,T cell,natural killer cell,monocyte"        # zero-shot labels
  scelmo fetch --list                                             # registry data
  scelmo info pbmc_labels.h5ad                                    # what scelmo wrote
  scelmo demo                                                     # the offline quick start on PBMC 68k

Inputs are never modified; an existing output is replaced only with --force.
Exit codes: 0 success, 1 failed job (one line on stderr), 2 wrong usage, 130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    """The ``scelmo`` argument parser, with one subparser per subcommand.

    Returns
    -------
    The parser; ``parse_args`` gives ``args.handler`` (the subcommand) and ``args.prog``.

    Examples
    --------
    >>> from scelmo.cli import build_parser
    >>> args = build_parser().parse_args(["embed", "pbmc.h5ad", "-o", "out.h5ad", "--mode", "aa"])
    >>> args.prog, args.mode, args.key_added
    ('scelmo embed', 'aa', 'X_elmo')
    """
    from scelmo import __version__

    parser = argparse.ArgumentParser(
        prog="scelmo",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scelmo {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    common = message_options()
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").COMMAND.add_to(subparsers, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``scelmo`` command line.

    Parameters
    ----------
    argv
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    The exit code: ``0`` success, ``1`` the job failed (one line on stderr), ``2`` wrong usage
    (argparse's message), ``130`` interrupted.

    Examples
    --------
    >>> from scelmo.cli import main
    >>> main(["info", "no_such_file.h5ad"])  # doctest: +SKIP
    1
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before a subcommand runs (while scelmo and its libraries are imported); the
        # subcommand's own interrupts are reported by run_command.
        print("scelmo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version and usage errors
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else EXIT_USAGE)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return run_command(args, args.handler)
