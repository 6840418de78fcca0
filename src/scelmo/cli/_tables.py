"""The gene table of a subcommand: a saved ``.npz``, a registry entry, or one built from gene text."""

from __future__ import annotations

import argparse
import difflib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._files import check_output, existing_file
from ._runtime import CLIError, one_line

if TYPE_CHECKING:
    from scelmo.gene_embeddings import GeneEmbeddings

__all__ = [
    "SOURCES",
    "TableChoice",
    "add_build_arguments",
    "add_table_arguments",
    "build_table",
    "choose_table",
    "load_table",
    "read_table_file",
]

#: Gene text sources of ``pp.build_gene_embeddings`` offered on the command line.
SOURCES = ("offline", "ncbi", "llm")


def add_build_arguments(
    group: argparse._ArgumentGroup, *, default_note: str = "", batch_help: str = "texts per encoder batch"
) -> None:
    """Add the options of building a table from gene text: ``--source``, ``--encoder`` and their settings.

    Parameters
    ----------
    group
        The argument group to add to.
    default_note
        Appended to the help of ``--source`` and ``--encoder``.
    batch_help
        Help of ``--batch-size``.
    """
    group.add_argument(
        "--source",
        choices=SOURCES,
        default=None,
        help="gene text: offline (HGNC names + GO terms, no network; the default), ncbi (NCBI summaries "
        f"through mygene, GenePT), llm (a chat model's answer, scELMo; needs OPENAI_API_KEY){default_note}",
    )
    group.add_argument(
        "--encoder",
        default=None,
        metavar="ENCODER",
        help="text encoder: local (bundled all-MiniLM-L6-v2, offline; the default), openai "
        f"(text-embedding-ada-002), openai:MODEL, or a sentence-transformers model folder{default_note}",
    )
    group.add_argument(
        "--llm-model", metavar="MODEL", help="chat model of --source llm (default gpt-3.5-turbo)"
    )
    group.add_argument("--device", metavar="DEVICE", help="torch device of a local model, e.g. cuda")
    group.add_argument("--batch-size", type=int, metavar="N", help=batch_help)
    group.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        help="do not keep gene texts and vectors in the cache (SCELMO_DATA_DIR/cache), which makes reruns free",
    )


def add_table_arguments(
    parser: argparse.ArgumentParser, *, batch_help: str = "texts per encoder batch"
) -> None:
    """Add ``--genes``, ``--trusted``, ``--save-genes`` and the build options to ``parser``.

    Parameters
    ----------
    parser
        The subcommand's parser.
    batch_help
        Help of ``--batch-size``.
    """
    group = parser.add_argument_group(
        "gene table",
        "Give a table with --genes, or leave it out to build one for the data's genes from gene\n"
        "text (--source, --encoder); building is cached, so a rerun is fast.",
    )
    group.add_argument(
        "-g",
        "--genes",
        metavar="TABLE",
        help="a .npz gene table (from `scelmo build-genes`) or a registry name (see `scelmo fetch --list`)",
    )
    group.add_argument(
        "--trusted",
        action="store_true",
        help="allow unpickling a registry table that publishes no hash, or a .pkl file; only for "
        "sources you have checked",
    )
    add_build_arguments(group, batch_help=batch_help)
    group.add_argument("--save-genes", metavar="FILE.npz", help="also save the table built on the fly")


@dataclass(frozen=True)
class TableChoice:
    """Where a subcommand's gene table comes from, checked before any work.

    Attributes
    ----------
    kind
        ``"file"``, ``"registry"`` or ``"build"``.
    value
        The file, the registry name, or ``None`` (build).
    """

    kind: str
    value: str | None = None


def _looks_like_path(spec: str) -> bool:
    from scelmo.gene_embeddings import PICKLE_SUFFIXES

    return (
        Path(spec).suffix in (".npz", *PICKLE_SUFFIXES)
        or os.sep in spec
        or "/" in spec
        or Path(spec).exists()
    )


def choose_table(
    args: argparse.Namespace, *, force: bool = False, encoder_with_table: bool = False
) -> TableChoice:
    """Check the gene-table options (cheaply: files exist, names are registered) and say what to do.

    Parameters
    ----------
    args
        The parsed options (``genes``, ``trusted``, ``source``, ``encoder``, ``llm_model``,
        ``device``, ``save_genes``).
    force
        ``--force``, for ``--save-genes``.
    encoder_with_table
        ``--encoder`` may come with ``--genes`` (it then means the encoder of class texts).

    Returns
    -------
    The choice.

    Raises
    ------
    CLIError
        For a missing file, an unknown registry name, or options that contradict each other.
    """
    check_build_options(args)
    spec = args.genes
    if spec is None:
        save = getattr(args, "save_genes", None)
        if save:
            check_output(save, suffix=".npz", force=force, what="--save-genes")
        return TableChoice("build")
    if args.source is not None or (args.encoder is not None and not encoder_with_table):
        raise CLIError("--source/--encoder build a gene table; leave them out when --genes gives one")
    if getattr(args, "save_genes", None):
        raise CLIError("--save-genes saves a table built on the fly; with --genes the table already exists")
    from scelmo import datasets
    from scelmo.gene_embeddings import PICKLE_SUFFIXES, GeneEmbeddings

    if _looks_like_path(spec):
        file = existing_file(spec, "gene table")
        if GeneEmbeddings.requires_trust(file) and not args.trusted:
            raise CLIError(
                f"gene table {file} is a pickle, which can run code when loaded; pass --trusted if you made "
                "it or checked its source, or use a .npz table"
            )
        if file.suffix not in (".npz", *PICKLE_SUFFIXES):
            raise CLIError(f"gene table {file} must be a .npz file (written by `scelmo build-genes`)")
        return TableChoice("file", str(file))
    names = list(datasets.available()["name"])
    if spec not in names:
        close = difflib.get_close_matches(spec, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CLIError(
            f"{spec!r} is neither a gene table file nor a registry name{hint}; see `scelmo fetch --list`"
        )
    if GeneEmbeddings.requires_trust(spec, registry=True) and not args.trusted:
        raise CLIError(
            f"registry table {spec!r} publishes no hash, so its pickle is not unpickled; check its source "
            f"({datasets.entry(spec)['source'] or 'see `scelmo fetch --list`'}), then pass --trusted"
        )
    return TableChoice("registry", spec)


def check_build_options(args: argparse.Namespace) -> None:
    """Raise a :class:`CLIError` for build options that do not go together."""
    if args.llm_model and (args.source or "offline") != "llm":
        raise CLIError("--llm-model is the chat model of --source llm")
    if args.device and str(args.encoder or "local").startswith("openai"):
        raise CLIError("--device is for local encoders; OpenAI encoders run remotely")
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")


def load_table(choice: TableChoice, *, trusted: bool, progress: bool) -> GeneEmbeddings:
    """Load the table of a ``"file"`` or ``"registry"`` choice.

    Parameters
    ----------
    choice
        From :func:`choose_table`.
    trusted
        Unpickle tables without a published sha256.
    progress
        Show a download bar.

    Returns
    -------
    The gene table.
    """
    from scelmo import datasets
    from scelmo.gene_embeddings import GeneEmbeddings

    if choice.value is None:
        raise ValueError("A 'build' choice has no table to load yet: build it (scelmo build-genes) first.")
    if choice.kind == "registry":
        datasets.fetch(choice.value, progressbar=progress)
        return GeneEmbeddings.load(choice.value, trusted=trusted)
    return read_table_file(Path(choice.value), trusted=trusted)


def read_table_file(path: Path, *, trusted: bool = False) -> GeneEmbeddings:
    """Read a gene table file, with a :class:`CLIError` when an ``.npz`` is not one.

    Parameters
    ----------
    path
        A ``.npz`` (or, with ``trusted``, a pickle).
    trusted
        Unpickle a pickle.

    Returns
    -------
    The gene table.
    """
    from scelmo.gene_embeddings import GeneEmbeddings

    if path.suffix == ".npz" and not zipfile.is_zipfile(path):
        raise CLIError(f"gene table {path} is not a .npz file (written by `scelmo build-genes`)")
    try:
        return GeneEmbeddings.read(path, trusted=trusted)
    except (zipfile.BadZipFile, EOFError) as err:
        raise CLIError(f"gene table {path} is not a readable .npz ({one_line(err)})") from err


def build_table(genes: Sequence[str], args: argparse.Namespace, *, progress: bool) -> GeneEmbeddings:
    """Build a table for ``genes`` with ``pp.build_gene_embeddings`` from the build options.

    Parameters
    ----------
    genes
        Gene symbols.
    args
        The parsed options (``source``, ``encoder``, ``llm_model``, ``device``, ``batch_size``, ``cache``).
    progress
        Show progress bars.

    Returns
    -------
    The gene table.
    """
    from scelmo.pp import build_gene_embeddings

    source_kwargs = {"model": args.llm_model} if args.llm_model else {}
    return build_gene_embeddings(
        list(genes),
        source=args.source or "offline",
        encoder=args.encoder or "local",
        cache=args.cache,
        batch_size=args.batch_size,
        encoder_kwargs={"device": args.device} if args.device else None,
        progress=progress,
        **source_kwargs,
    )


def table_summary(table: GeneEmbeddings) -> str:
    """``"752 genes x 384 dims (offline text, sentence-transformers/all-MiniLM-L6-v2)"``."""
    p = table.provenance
    what = ", ".join(
        str(v)
        for v in (
            f"{p['text_source']} text" if p.get("text_source") else None,
            p.get("model"),
            f"registry {p['registry_name']}" if p.get("registry_name") else None,
        )
        if v
    )
    return f"{len(table)} genes x {table.dim} dims" + (f" ({what})" if what else "")
