"""What the subcommands' parsers share: how a subcommand is declared, and the options they repeat.

A subcommand module defines its options (``add_arguments(parser)``) and its job
(``run(args)``), and declares itself with one :class:`Subcommand`; :func:`scelmo.cli.build_parser`
adds each to the ``scelmo`` parser. The option blocks several subcommands have (messages,
``INPUT -o OUT.h5ad --force``, ``--gene-column``) are made here, once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Subcommand", "add_command", "add_gene_column", "add_h5ad_input_output", "message_options"]


def message_options() -> argparse.ArgumentParser:
    """The parent parser of every subcommand: ``--quiet``, ``--verbose``, ``--debug``.

    Returns
    -------
    A parser without help, for ``parents=``.

    Examples
    --------
    >>> from scelmo.cli._common import message_options
    >>> message_options().parse_args(["-q"]).quiet
    True
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("messages")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    group.add_argument("-v", "--verbose", action="store_true", help="log each step (scelmo's INFO messages)")
    group.add_argument(
        "--debug", action="store_true", help="print the traceback of an error, and all warnings"
    )
    return common


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    epilog: str,
    parents: list[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """A subcommand parser whose description and example epilog keep their line breaks.

    Parameters
    ----------
    subparsers
        The ``scelmo`` parser's subcommands.
    name
        The subcommand.
    help
        Its line in ``scelmo --help``.
    description, epilog
        Its ``--help`` text before and after the options (the epilog holds the examples).
    parents
        Parsers whose options it has too (:func:`message_options`).

    Returns
    -------
    The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> from scelmo.cli._common import add_command
    >>> subparsers = argparse.ArgumentParser(prog="scelmo").add_subparsers()
    >>> add_command(subparsers, "info", help="h", description="d", epilog="e", parents=[]).prog
    'scelmo info'
    """
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        parents=parents,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


@dataclass(frozen=True)
class Subcommand:
    """A ``scelmo`` subcommand: its name, help texts, options and job.

    Attributes
    ----------
    name
        What follows ``scelmo`` on the command line.
    help
        Its line in ``scelmo --help``.
    description, epilog
        Its ``--help`` text before and after the options; the epilog holds worked examples.
    arguments
        Adds the subcommand's own options to its parser.
    run
        The job: parsed options -> exit code.

    Examples
    --------
    >>> import argparse
    >>> from scelmo.cli._common import Subcommand
    >>> hello = Subcommand("hello", "say hello", "Says hello.", "", lambda parser: None, lambda args: 0)
    >>> subparsers = argparse.ArgumentParser(prog="scelmo").add_subparsers()
    >>> args = hello.add_to(subparsers, []).parse_args([])
    >>> args.prog, args.handler(args)
    ('scelmo hello', 0)
    """

    name: str
    help: str
    description: str
    epilog: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

    def add_to(
        self, subparsers: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        """Add the subcommand to ``subparsers``; ``parse_args`` then gives ``args.handler`` and ``args.prog``.

        Parameters
        ----------
        subparsers
            The ``scelmo`` parser's subcommands.
        parents
            Parsers whose options every subcommand has (:func:`message_options`).

        Returns
        -------
        The subcommand's parser.
        """
        parser = add_command(
            subparsers,
            self.name,
            help=self.help,
            description=self.description,
            epilog=self.epilog,
            parents=parents,
        )
        self.arguments(parser)
        parser.set_defaults(handler=self.run, prog=parser.prog)
        return parser


def add_h5ad_input_output(parser: argparse.ArgumentParser) -> None:
    """Add ``INPUT -o OUT.h5ad [--force]``, the arguments of the commands that turn an h5ad into another.

    Parameters
    ----------
    parser
        The subcommand's parser.

    Examples
    --------
    >>> import argparse
    >>> from scelmo.cli._common import add_h5ad_input_output
    >>> parser = argparse.ArgumentParser()
    >>> add_h5ad_input_output(parser)
    >>> vars(parser.parse_args(["pbmc.h5ad", "-o", "out.h5ad"]))
    {'input': 'pbmc.h5ad', 'output': 'out.h5ad', 'force': False}
    """
    parser.add_argument("input", help="the cells (.h5ad)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.h5ad", help="the result (.h5ad)")
    parser.add_argument("--force", action="store_true", help="replace OUT.h5ad if it exists (even the input)")


def add_gene_column(
    container: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    aliases: Sequence[str] = (),
    methods: str | None = None,
) -> None:
    """Add ``--gene-column COLUMN``: a ``var`` column that names the genes of the matrix read.

    Parameters
    ----------
    container
        The parser or argument group.
    aliases
        Other spellings of the option (``"--gene-id-key"``).
    methods
        The methods it applies to, for the help (``"elmo, langcell"``).

    Examples
    --------
    >>> import argparse
    >>> from scelmo.cli._common import add_gene_column
    >>> parser = argparse.ArgumentParser()
    >>> add_gene_column(parser, aliases=["--gene-id-key"])
    >>> parser.parse_args(["--gene-id-key", "symbol"]).gene_column
    'symbol'
    """
    container.add_argument(
        "--gene-column",
        *aliases,
        dest="gene_column",
        metavar="COLUMN",
        help=(f"{methods}: " if methods else "")
        + "a var column (raw.var when adata.raw is read) with the gene symbols or Ensembl ids, for "
        "files whose var_names are neither; the output keeps the original var_names",
    )
