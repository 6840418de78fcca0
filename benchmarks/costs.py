"""What each step costs on real data at a realistic size, on this machine.

The README's "What it costs" table comes from this script. It times the steps a user runs on
their own data, one after the other, on cells resampled from a real data set (the Baron
pancreas, 20,125 genes, integer UMIs; see ``_datasets.py``) to the size asked for:

1. the gene table: offline gene text + the bundled all-MiniLM-L6-v2 encoder, on a sample of
   ``--table-genes`` genes with an empty cache (texts per second; a whole transcriptome is the
   number of genes divided by that rate), and the same genes again from the cache;
2. ``tl.elmo_embed`` (counts -> ``X_elmo``);
3. ``tl.zeroshot_annotate`` (elmo, the package's defaults, 10 class names);
4. ``tl.knn_annotate`` (half the cells as the reference for the other half);
5. ``pp.tokenize`` (Geneformer V1 rank tokens, LangCell's input).

LangCell's encoder is timed by ``benchmarks/langcell.py`` (at the published geometry it encodes
about 0.8 real cells per second on 2 CPU cores); the adapter by ``benchmarks/adapter.py``.

Resampled cells: each is a real cell's counts thinned binomially (keep probability 0.7-1.0)
plus Poisson noise on its detected genes, so the matrix keeps the genes, sparsity and
populations of real cells.

Run ``python benchmarks/costs.py`` (20,000 cells; about 5 minutes on 2 cores) or
``--cells 100000``. Wall times depend on what else runs on the machine: the CPU seconds beside
them are what the step itself used.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _datasets
from _measure import measure

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)


def resampled(adata, n_cells: int, seed: int = 0):
    """``n_cells`` cells drawn from ``adata``'s counts, thinned and perturbed (see the module docstring)."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(adata.layers["counts"])
    pick = rng.integers(0, adata.n_obs, size=n_cells)
    rows = counts[pick].tocsr()
    keep = np.repeat(rng.uniform(0.7, 1.0, size=n_cells), np.diff(rows.indptr))
    data = rng.binomial(rows.data.astype(np.int64), keep) + rng.poisson(0.05, size=rows.data.size)
    rows = sp.csr_matrix((data.astype(np.float32), rows.indices, rows.indptr), shape=rows.shape)
    rows.eliminate_zeros()
    out = ad.AnnData(
        rows,
        obs=pd.DataFrame(
            {"fine": adata.obs["fine"].to_numpy()[pick]}, index=[f"cell{i}" for i in range(n_cells)]
        ),
        var=pd.DataFrame(index=adata.var_names),
    )
    out.layers["counts"] = out.X.copy()
    sc.pp.normalize_total(out, target_sum=1e4)
    sc.pp.log1p(out)
    return out


def cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


def timed(name: str, func, rows: list, *, unit: str, count: int) -> None:
    before = cpu_seconds()
    result = measure(func)
    cpu = cpu_seconds() - before
    rows.append(
        {
            "step": name,
            "wall s": round(result.seconds, 2),
            "CPU s": round(cpu, 2),
            "peak memory": f"{result.peak_gib:.2f} GiB",
            f"{unit}/s (wall)": round(count / result.seconds, 1),
        }
    )
    print(f"  {name}: {result.seconds:.2f} s wall, {cpu:.2f} s CPU", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--table-genes", type=int, default=500, help="genes embedded with an empty cache")
    parser.add_argument(
        "--steps",
        nargs="+",
        default=["table", "embed", "zeroshot", "knn", "tokenize"],
        choices=["table", "embed", "zeroshot", "knn", "tokenize"],
        help="steps to time (the cached whole table and X_elmo are made when a later step needs them)",
    )
    args = parser.parse_args(argv)

    import pandas as pd

    import scelmo as se

    source = _datasets.baron()
    adata = resampled(source, args.cells)
    nnz = adata.layers["counts"].nnz / adata.n_obs
    print(
        f"{adata.n_obs} cells x {adata.n_vars} genes (resampled Baron pancreas), {nnz:.0f} non-zeros per cell"
    )

    genes = _datasets.genes_for_tables(source)
    rng = np.random.default_rng(1)
    sample = sorted(rng.choice(genes, size=min(args.table_genes, len(genes)), replace=False).tolist())
    rows: list[dict] = []
    steps = set(args.steps)
    if "table" in steps:
        with tempfile.TemporaryDirectory() as cache_dir:
            for when in ("empty cache", "from the cache"):
                timed(
                    f"gene table, {len(sample)} genes, {when}",
                    lambda cache_dir=cache_dir: se.pp.build_gene_embeddings(
                        sample, cache_dir=cache_dir, progress=False
                    ),
                    rows,
                    unit="genes",
                    count=len(sample),
                )
    table = _datasets.gene_table(source, progress=False)  # cached: the whole table, for the steps below
    if steps & {"embed", "knn"}:
        timed(
            "tl.elmo_embed",
            lambda: se.tl.elmo_embed(adata, table, layer="counts", progress=False),
            rows,
            unit="cells",
            count=adata.n_obs,
        )
    classes = _datasets.classes(source)
    if "zeroshot" in steps:
        timed(
            f"tl.zeroshot_annotate (elmo, {len(classes)} classes)",
            lambda: se.tl.zeroshot_annotate(adata, classes, gene_embeddings=table, use_raw=False),
            rows,
            unit="cells",
            count=adata.n_obs,
        )
    if "knn" in steps:
        half = adata.n_obs // 2
        reference, query = adata[:half].copy(), adata[half:].copy()
        timed(
            f"tl.knn_annotate ({half} reference cells)",
            lambda: se.tl.knn_annotate(query, reference, "fine", use_rep="X_elmo"),
            rows,
            unit="cells",
            count=query.n_obs,
        )
    if "tokenize" in steps:
        timed(
            "pp.tokenize",
            lambda: se.pp.tokenize(adata, layer="counts"),
            rows,
            unit="cells",
            count=adata.n_obs,
        )
    frame = pd.DataFrame(rows)
    print()
    print(frame.to_markdown(index=False))
    if "table" in steps:
        rate = rows[0]["genes/s (wall)"]
        print(
            f"\nA whole transcriptome's gene table (20,000 genes) at {rate:.1f} genes/s: "
            f"about {20_000 / rate / 60:.0f} minutes with an empty cache; {time.strftime('%Y-%m-%d')}."
        )


if __name__ == "__main__":
    main()
