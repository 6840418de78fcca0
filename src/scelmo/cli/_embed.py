"""``scelmo embed``: cells -> scELMo / GenePT cell embeddings (``tl.elmo_embed``) in ``obsm``."""

from __future__ import annotations

import argparse

from ._common import Subcommand, add_gene_column, add_h5ad_input_output
from ._files import check_output, read_h5ad, write_h5ad, write_table
from ._matrix import add_matrix_arguments, check_matrix, genes_from_column
from ._runtime import CLIError, one_line
from ._tables import add_table_arguments, build_table, choose_table, load_table, table_summary

__all__ = ["COMMAND", "add_arguments", "run"]

DESCRIPTION = """\
Embed every cell as the expression-weighted average of its genes' text embeddings
(scELMo / GenePT) and write the result to obsm[KEY] (default X_elmo) of a new .h5ad,
with the parameters, the gene table's provenance and the gene coverage in uns[KEY].

The expression matrix is adata.raw when present (scanpy's rule), else X; log-normalised
expression is the usual input."""

EPILOG = """\
examples:
  # gene table built on the fly from offline gene text and the bundled encoder (no network)
  scelmo embed pbmc.h5ad -o pbmc_elmo.h5ad

  # a table made once with `scelmo build-genes`; GenePT's arithmetic average over a layer
  scelmo embed pbmc.h5ad -o pbmc_elmo.h5ad --genes pbmc_genes.npz --mode aa --layer lognorm

  # GenePT's table from its Zenodo archive (md5-verified)
  scelmo embed pbmc.h5ad -o pbmc_genept.h5ad --genes genept_ada_text --key-added X_genept

  # var_names are numbers; the symbols are in var['gene_symbols']
  scelmo embed counts.h5ad -o counts_elmo.h5ad --gene-column gene_symbols --genes pbmc_genes.npz
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``scelmo embed`` to its ``parser``: INPUT -o OUT.h5ad, the embedding, the matrix and the gene table."""
    add_h5ad_input_output(parser)
    group = parser.add_argument_group("embedding")
    group.add_argument(
        "--mode",
        choices=["wa", "aa"],
        default="wa",
        help="wa: weighted average (scELMo), aa: arithmetic average (GenePT-w); default %(default)s",
    )
    group.add_argument(
        "--key-added", default="X_elmo", metavar="KEY", help="obsm/uns key; default %(default)s"
    )
    group.add_argument(
        "--renormalize",
        action="store_true",
        help="wa: weights sum to one over genes in the table (not over all genes, as in the paper)",
    )
    group.add_argument(
        "--min-coverage",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="warn when fewer genes than this are in the table; default %(default)s",
    )
    group.add_argument(
        "--id-type",
        choices=["auto", "symbol", "ensembl"],
        default="auto",
        help="what the data's gene names are; default %(default)s (detected)",
    )
    add_gene_column(group)
    add_matrix_arguments(parser, raw_default="adata.raw when present, unless --layer is given")
    add_table_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``scelmo embed`` on its parsed options (see ``scelmo embed --help``); exit code 0, errors raise."""
    from scelmo._anndata import check_key, expression_matrix
    from scelmo.tl import elmo_embed

    check_key(args.key_added, "--key-added")
    progress = not args.quiet
    out = check_output(args.output, suffix=".h5ad", force=args.force, inputs=[args.input])
    choice = choose_table(args, force=args.force)
    adata = read_h5ad(args.input)
    check_matrix(adata, layer=args.layer, use_raw=args.use_raw)
    with genes_from_column(adata, args.gene_column, layer=args.layer, use_raw=args.use_raw):
        if choice.kind == "build":
            genes = expression_matrix(adata, layer=args.layer, use_raw=args.use_raw).var_names
            table = build_table(genes, args, progress=progress)
        else:
            table = load_table(choice, trusted=args.trusted, progress=progress)
        try:
            elmo_embed(
                adata,
                table,
                mode=args.mode,
                layer=args.layer,
                use_raw=args.use_raw,
                renormalize=args.renormalize,
                key_added=args.key_added,
                id_type=args.id_type,
                min_coverage=args.min_coverage,
                progress=progress,
            )
        except ValueError as err:
            message = one_line(err)
            if message.startswith("No gene of the data matches the table"):
                # The library's advice names Python arguments; give the command line's.
                hint = (
                    " Check --gene-column, --id-type, and that the table is for this organism."
                    if args.gene_column
                    else " If the var_names are not gene symbols or Ensembl ids (numbers, say), name the var "
                    "column that holds them with --gene-column; else check --id-type, and that the table "
                    "is for this organism."
                )
                raise CLIError(message.split(" Pass ", 1)[0] + hint) from err
            raise
    if args.gene_column:
        adata.uns[args.key_added]["params"]["gene_column"] = args.gene_column
    if choice.kind == "build" and args.save_genes:
        write_table(table, check_output(args.save_genes, suffix=".npz", force=args.force), force=args.force)
        print(f"wrote {args.save_genes}: gene table, {table_summary(table)}")
    write_h5ad(adata, out, force=args.force)
    record = adata.uns[args.key_added]
    coverage = record["coverage"]
    print(
        f"wrote {out}: obsm[{args.key_added!r}] ({adata.n_obs} cells x {table.dim} dims, mode {args.mode}, "
        f"{record['params']['matrix']}); {coverage['n_matched']} of {coverage['n_vars']} genes in the table "
        f"({table_summary(table)})"
    )
    return 0


COMMAND = Subcommand(
    "embed",
    help="h5ad -> h5ad with cell embeddings in obsm['X_elmo'] (scELMo / GenePT)",
    description=DESCRIPTION,
    epilog=EPILOG,
    arguments=add_arguments,
    run=run,
)
