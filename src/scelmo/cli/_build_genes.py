"""``scelmo build-genes``: gene names -> gene text -> text encoder -> a gene table (``.npz``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import Subcommand
from ._files import check_output, existing_file, is_hdf5, read_h5ad, read_text_lines, write_table
from ._runtime import CLIError
from ._tables import add_build_arguments, build_table, check_build_options, table_summary

__all__ = ["COMMAND", "add_arguments", "read_genes", "run"]

DESCRIPTION = """\
Describe each gene in text and embed the text: a gene table (genes x dims, with its
provenance) saved as a safe .npz, for `scelmo embed --genes` and `scelmo annotate --genes`.

The genes come from an .h5ad (its var_names, or those of adata.raw with --use-raw, or a
var column with --gene-column) or from a text file (one gene per line; the first
tab-separated column is used). Gene texts and vectors are cached in SCELMO_DATA_DIR, so an
interrupted run resumes and a rerun asks no service again."""

EPILOG = """\
examples:
  # offline: HGNC names + GO terms, bundled all-MiniLM-L6-v2 encoder (no network, no key)
  scelmo build-genes pbmc.h5ad --use-raw -o pbmc_genes.npz

  # GenePT's recipe: NCBI gene summaries embedded with OpenAI (needs OPENAI_API_KEY)
  scelmo build-genes genes.txt -o genept_like.npz --source ncbi --encoder openai

  # scELMo's recipe: a chat model describes each gene, OpenAI embeds the answers
  scelmo build-genes genes.txt -o scelmo_like.npz --source llm --llm-model gpt-4o-mini --encoder openai
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``scelmo build-genes`` to its ``parser``: GENES -o OUT.npz, the genes read and the gene text and encoder."""
    parser.add_argument("genes", metavar="GENES", help="an .h5ad, or a text file with one gene per line")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="the gene table (.npz)")
    parser.add_argument("--force", action="store_true", help="replace OUT.npz if it exists")
    parser.add_argument("--use-raw", action="store_true", help="h5ad: the genes of adata.raw")
    parser.add_argument("--gene-column", metavar="COLUMN", help="h5ad: a var column with the gene symbols")
    add_build_arguments(parser.add_argument_group("gene text and encoder"), default_note="")


def read_genes(path: str | Path, *, use_raw: bool = False, gene_column: str | None = None) -> list[str]:
    r"""Gene names from an ``.h5ad`` or a text file.

    Parameters
    ----------
    path
        An ``.h5ad`` (read in backed mode: the matrix stays on disk) or a text file with one
        gene per line (first tab-separated column; blank and ``#`` lines skipped).
    use_raw
        ``.h5ad``: the genes of ``adata.raw``.
    gene_column
        ``.h5ad``: a ``var`` column instead of the var names.

    Returns
    -------
    The genes, in order, each once.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.cli._build_genes import read_genes
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "genes.txt"
    >>> _ = file.write_text("# markers\nCD3E\tT cells\nMS4A1\nCD3E\n")
    >>> read_genes(file)
    ['CD3E', 'MS4A1']
    """
    file = existing_file(path, "genes")
    if is_hdf5(file):
        adata = read_h5ad(file, what="genes", backed=True)
        try:
            if use_raw and adata.raw is None:
                raise CLIError(f"--use-raw, but {file} has no adata.raw")
            var = adata.raw.var if use_raw else adata.var
            if gene_column is not None:
                if gene_column not in var.columns:
                    available = ", ".join(var.columns) or "none"
                    raise CLIError(f"{file} has no var column {gene_column!r} (its columns: {available})")
                names = var[gene_column].astype(str)
            else:
                names = var.index.astype(str)
            genes = [g for g in names if g and g.lower() != "nan"]
        finally:
            adata.file.close()
    else:
        if file.suffix.lower() == ".h5ad":
            raise CLIError(f"genes file {file} is not an h5ad file (it is not HDF5)")
        if use_raw or gene_column:
            raise CLIError("--use-raw/--gene-column are for an .h5ad input; this is a text file")
        genes = [line.split("\t")[0].strip() for line in read_text_lines(file, what="genes")]
    genes = list(dict.fromkeys(g for g in genes if g))
    if not genes:
        raise CLIError(f"no gene names in {file}")
    return genes


def run(args: argparse.Namespace) -> int:
    """Run ``scelmo build-genes`` on its parsed options (see ``scelmo build-genes --help``); exit code 0, errors raise."""
    check_build_options(args)
    out = check_output(args.output, suffix=".npz", force=args.force, inputs=[args.genes])
    genes = read_genes(args.genes, use_raw=args.use_raw, gene_column=args.gene_column)
    table = build_table(genes, args, progress=not args.quiet)
    write_table(table, out, force=args.force)
    missing = table.provenance.get("genes_without_text", [])
    print(
        f"wrote {out}: gene table, {table_summary(table)}; {len(missing)} of {len(genes)} genes without text"
    )
    return 0


COMMAND = Subcommand(
    "build-genes",
    help="genes (h5ad or text file) -> gene text -> encoder -> gene table (.npz)",
    description=DESCRIPTION,
    epilog=EPILOG,
    arguments=add_arguments,
    run=run,
)
