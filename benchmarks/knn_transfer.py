"""kNN label transfer on every evaluation data set: elmo embeddings against controls and PCA.

For each real labelled data set of ``_datasets.py`` (pbmc68k, baron, celltypist), out-of-fold
10-NN label transfer (``tl.knn_annotate`` with ``reference=None``: 5 stratified folds, cosine,
hnswlib; no cell votes for itself) on:

- ``X_elmo``: ``wa`` embeddings with the package's default gene table (offline text, bundled
  encoder);
- two controls of the same shape: the table's rows shuffled across genes (same vectors, wrong
  genes) and a Gaussian table (scELMo's paper found random gene embeddings about as good as
  GPT-3.5 ones after fine-tuning, so every comparison should show them);
- ``X_pca``: 50 principal components of the log-normalised, scaled highly variable genes (the
  usual scanpy baseline).

Scored against ``obs['fine']`` and ``obs['coarse']``: accuracy and macro-F1; the last row per
metric is the worst case over data sets. No option is tuned here: every embedding uses its
defaults, so there is nothing to leave out.

Run ``python benchmarks/knn_transfer.py`` (about 2 minutes on 2 cores once the gene tables are
cached; the first run embeds their gene texts).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _datasets

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)


def controls(table, seed: int = 0):
    """The table with rows shuffled across genes, and a Gaussian table of the same shape."""
    import scelmo as se

    rng = np.random.default_rng(seed)
    vectors = np.asarray(table.vectors)
    shuffled = se.GeneEmbeddings(
        table.genes, vectors[rng.permutation(len(table))], provenance={"text_source": "shuffled"}
    )
    gaussian = se.GeneEmbeddings(
        table.genes, rng.normal(size=vectors.shape), provenance={"text_source": "random"}
    )
    return shuffled, gaussian


def embeddings(adata, table) -> list[tuple[str, str]]:
    import scelmo as se

    shuffled, gaussian = controls(table)
    se.tl.elmo_embed(adata, table, layer="counts", progress=False)
    se.tl.elmo_embed(adata, shuffled, layer="counts", key_added="X_shuffled", progress=False)
    se.tl.elmo_embed(adata, gaussian, layer="counts", key_added="X_gaussian", progress=False)
    _datasets.add_pca(adata)
    return [
        ("elmo wa (default table)", "X_elmo"),
        ("control: rows shuffled", "X_shuffled"),
        ("control: Gaussian table", "X_gaussian"),
        ("PCA (50, HVG)", "X_pca"),
    ]


def evaluate(name: str) -> list[dict]:
    import scelmo as se

    adata = _datasets.load(name)
    table = _datasets.gene_table(adata, progress=True)
    rows = []
    for label, rep in embeddings(adata, table):
        row = {"data set": name, "embedding": label}
        for level in ("fine", "coarse"):
            se.tl.knn_annotate(adata, None, level, use_rep=rep, k=10, folds=5, key_added="knn")
            row[f"{level} acc"], row[f"{level} F1"] = _datasets.score(adata, level, "knn")
        rows.append(row)
        print(
            f"  {name} / {label}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)),
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=list(_datasets.DATASETS), choices=_datasets.DATASETS)
    args = parser.parse_args(argv)

    rows = [row for name in args.datasets for row in evaluate(name)]
    print("\n## Out-of-fold 10-NN label transfer (5 folds)\n")
    print(_datasets.with_worst_case(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
