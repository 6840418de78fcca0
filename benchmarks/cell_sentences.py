"""GenePT-s cell sentences beside scELMo embeddings and PCA on every evaluation data set.

For each real labelled data set of ``_datasets.py`` (pbmc68k, baron, celltypist):

- ``X_genept_s``: ``tl.cell_sentence_embed`` with its defaults (top 60 expressed symbols,
  bundled all-MiniLM-L6-v2 on the CPU). Speed: cells per second of a first run (sentences
  built and encoded, cache off) on 128 random cells of each data set (``--speed-cells``), and
  of sentence building alone on all cells. The scores use every cell, embedded through the
  package's text cache, so a rerun encodes nothing;
- ``X_elmo``: ``tl.elmo_embed`` (``wa``) with the package's default gene table (offline gene
  text, the same bundled encoder), as in ``knn_transfer.py``;
- ``X_pca``: 50 principal components of the scaled highly variable genes.

Scores: out-of-fold 10-NN label transfer (``tl.knn_annotate`` with ``reference=None``: 5
stratified folds, cosine; no cell votes for itself) against ``obs['fine']`` and
``obs['coarse']`` (accuracy, macro-F1), and Leiden clustering (``metrics.leiden_scores``: NMI
and ARI of the best of resolutions 0.2..2.0) against ``obs['fine']``. Also prints how many
word pieces the sentences take in the encoder (its limit is 256).

Run ``python benchmarks/cell_sentences.py``: the first run encodes 3,181 sentences of about 200
word pieces (35 minutes on 2 busy CPU cores, about 2 cells/s); a rerun encodes only the timed
samples again (about 5 minutes there). ``--datasets pbmc68k`` for one data set,
``--speed-cells`` for the size of the timed samples, ``--threads`` for torch's threads.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _datasets

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)


def word_pieces(adata) -> tuple[float, int]:
    """Mean and largest number of word pieces of the sentences in the bundled encoder."""
    from transformers import AutoTokenizer

    from scelmo.cell_sentences import cell_sentences
    from scelmo.text import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path())
    lengths = np.array([len(ids) for ids in tokenizer(cell_sentences(adata.X, adata.var_names))["input_ids"]])
    return float(lengths.mean()), int(lengths.max())


def evaluate(name: str, speed_cells: int) -> tuple[list[dict], dict]:
    import scelmo as se
    from scelmo.cell_sentences import cell_sentences
    from scelmo.evaluation import leiden_scores

    adata = _datasets.load(name)
    start = time.perf_counter()
    cell_sentences(adata.X, adata.var_names)
    build_s = time.perf_counter() - start
    # Speed of a first run (nothing cached) on a random sample of cells ...
    sample = adata[np.sort(np.random.default_rng(0).permutation(adata.n_obs)[:speed_cells])].copy()
    start = time.perf_counter()
    se.tl.cell_sentence_embed(sample, cache=False, progress=False)
    embed_s = time.perf_counter() - start
    # ... and every cell through the package's cache (a rerun of the benchmark encodes nothing).
    se.tl.cell_sentence_embed(adata, progress=True)
    pieces_mean, pieces_max = word_pieces(adata)
    speed = {
        "data set": name,
        "cells": adata.n_obs,
        "genes": adata.n_vars,
        "sentences/s (build only)": adata.n_obs / build_s,
        "cells timed": sample.n_obs,
        "cells/s (build + encode)": sample.n_obs / embed_s,
        "word pieces mean": pieces_mean,
        "word pieces max": pieces_max,
    }
    print(f"  {name}: {sample.n_obs / embed_s:.1f} cells/s ({embed_s:.1f} s)", flush=True)

    se.tl.elmo_embed(adata, _datasets.gene_table(adata, progress=False), layer="counts", progress=False)
    _datasets.add_pca(adata)
    rows = []
    for label, rep in (
        ("GenePT-s (cell sentences)", "X_genept_s"),
        ("elmo wa (default table)", "X_elmo"),
        ("PCA (50, HVG)", "X_pca"),
    ):
        row = {"data set": name, "embedding": label}
        for level in ("fine", "coarse"):
            se.tl.knn_annotate(adata, None, level, use_rep=rep, k=10, folds=5, key_added="knn")
            row[f"kNN {level} acc"], row[f"kNN {level} F1"] = _datasets.score(adata, level, "knn")
        clustering = leiden_scores(adata, "fine", use_rep=rep)
        row["Leiden NMI"], row["Leiden ARI"] = clustering.nmi, clustering.ari
        rows.append(row)
        figures = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
        print(f"  {name} / {label}: {figures}", flush=True)
    return rows, speed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="*", default=list(_datasets.DATASETS), choices=_datasets.DATASETS)
    parser.add_argument("--speed-cells", type=int, default=128, help="cells timed with the cache off")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args(argv)

    import pandas as pd

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows, speeds = [], []
    for name in args.datasets:
        scores, speed = evaluate(name, args.speed_cells)
        rows += scores
        speeds.append(speed)
    print("\n## GenePT-s speed (bundled all-MiniLM-L6-v2, CPU, cache off)\n")
    print(pd.DataFrame(speeds).to_markdown(index=False, floatfmt=".1f"))
    print("\n## Out-of-fold 10-NN label transfer (5 folds) and Leiden on obs['fine']\n")
    print(_datasets.with_worst_case(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
