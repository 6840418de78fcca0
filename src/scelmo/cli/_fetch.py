"""``scelmo fetch``: a registry entry's verified local path (downloaded once), or the list of entries."""

from __future__ import annotations

import argparse
import difflib

from ._common import Subcommand
from ._runtime import CLIError

__all__ = ["COMMAND", "add_arguments", "run"]

DESCRIPTION = """\
Download a data file of the registry (gene tables, Geneformer dictionaries) into
SCELMO_DATA_DIR, check its sha256 (or md5, where the host publishes only that), and print
its path. A file already there with the right hash is not downloaded again. Files inside a
zip archive (GenePT's tables on Zenodo, KIND "member") are extracted alone from the verified
archive, which is downloaded first. Entries that cannot be downloaded (the LangCell
checkpoint) are pointed at a copy you have with --local."""

EPILOG = """\
examples:
  # what is in the registry, and what is already on this machine
  scelmo fetch --list

  # GenePT's ada-002 table: the Zenodo zip is downloaded once (md5-checked), the table
  # extracted from it; prints the table's path
  scelmo fetch genept_ada_text

  # the same from a copy of the zip you downloaded by hand (its md5 is checked)
  scelmo fetch genept_v2_archive --local ~/Downloads/GenePT_emebdding_v2.zip

  # register the LangCell checkpoint folder you downloaded (for `scelmo annotate --method langcell`)
  scelmo fetch langcell --local ~/models/langcell_ckpt
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``scelmo fetch`` to its ``parser``: NAME, --list, --local."""
    parser.add_argument("name", nargs="?", metavar="NAME", help="registry entry (see --list)")
    parser.add_argument(
        "--list", action="store_true", help="list the registry's entries and whether they are here"
    )
    parser.add_argument(
        "--local",
        metavar="PATH",
        help="point NAME at a file or folder you already have (its hash is pinned) instead of downloading",
    )


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    )


def list_entries() -> str:
    """The registry as an aligned text table: name, kind, present, licence, description.

    Returns
    -------
    The table, one line per entry under a header.
    """
    from scelmo import datasets

    frame = datasets.available()
    rows = [["NAME", "KIND", "HERE", "LICENSE", "DESCRIPTION"]]
    for record in frame.itertuples(index=False):
        description = record.description if len(record.description) <= 90 else record.description[:87] + "..."
        license_ = record.license if len(record.license) <= 24 else record.license[:21] + "..."
        rows.append([record.name, record.kind, "yes" if record.present else "no", license_, description])
    return _table(rows)


def run(args: argparse.Namespace) -> int:
    """Run ``scelmo fetch`` on its parsed options (see ``scelmo fetch --help``); exit code 0, errors raise."""
    from scelmo import datasets

    if args.list:
        if args.name or args.local:
            raise CLIError("--list takes no NAME or --local")
        print(list_entries())
        print(f"\ndata folder: {datasets.data_dir()} (set SCELMO_DATA_DIR to move it)")
        return 0
    if not args.name:
        raise CLIError("give a registry NAME to fetch, or --list to see them")
    if args.local:
        path = datasets.register_local(args.name, args.local)
        print(path)
        return 0
    names = list(datasets.available()["name"])
    if args.name not in names:
        close = difflib.get_close_matches(args.name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CLIError(f"no registry entry named {args.name!r}{hint} (see `scelmo fetch --list`)")
    print(datasets.fetch(args.name, progressbar=not args.quiet))
    return 0


COMMAND = Subcommand(
    "fetch",
    help="download a registry entry (hash-checked) and print its path; --list shows entries",
    description=DESCRIPTION,
    epilog=EPILOG,
    arguments=add_arguments,
    run=run,
)
