"""Benchmark ``tl.elmo_embed`` against the seed's dense formula and the machine's sparse products.

Default workload (the issue's): 100k cells x 20k genes, CSR with about 1,500 non-zeros per cell,
and a 20k x 1536 gene table. In one process, on the same data, it times and measures the peak
memory (RSS above the start of each call) of:

- the seed's procedure as published: densify, float64, ``(X / X.sum(1)) @ E`` — on the largest
  slice that fits comfortably (``--seed-cells``), then scaled linearly to all cells;
- the same dense formula in float32 (on the same slice, scaled);
- scipy's CSR x dense product on all cells;
- torch's CSR x dense product on all cells (one call);
- torch's CSR x dense product over 64-column table blocks (``backend="torch"`` without the
  AnnData wrapper);
- our numba kernel (``scelmo._numba_kernel``: 64-column tiles, 512-gene blocks, accumulators in
  vector registers; ``backend="numba"``, the default, without the wrapper), including tiling the
  table; its first call on a small slice is timed separately (compilation, or loading numba's
  on-disk cache when an earlier run compiled it);
- ``scelmo.tl.elmo_embed`` (mode ``wa``) on an AnnData holding the CSR matrix.

Every row reports wall time and CPU time (``time.process_time``, all threads); on a shared
machine compare rows of one run as ratios. The "fastest product" ratio is taken over every row
except the seed's float64 procedure and ``elmo_embed`` itself.

``--million`` adds a 1M-cell run of ``elmo_embed`` over a lazily generated dask array (no
matrix held in memory; output 1M x dim float32) and reports its peak memory.

Run ``python benchmarks/elmo_embed.py`` (about 10 minutes on 2 cores; ``--skip-slow`` skips the
slow single-call products), ``--cells 20000`` for a mid-size run, or ``--quick``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import gib, measure

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


def random_counts(n_cells: int, n_genes: int, nnz_per_cell: int, seed: int) -> sp.csr_matrix:
    """Log-normalised-looking CSR: ~``nnz_per_cell`` distinct genes per cell, positive values."""
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, n_cells, 10_000):
        rows = min(10_000, n_cells - start)
        columns = np.sort(rng.integers(0, n_genes, size=(rows, nnz_per_cell), dtype=np.int32), axis=1)
        values = np.log1p(rng.poisson(1.5, size=columns.shape).astype(np.float32) + 1)
        indptr = np.arange(rows + 1, dtype=np.int64) * nnz_per_cell
        block = sp.csr_matrix((values.ravel(), columns.ravel(), indptr), shape=(rows, n_genes))
        block.sum_duplicates()
        blocks.append(block)
    matrix = sp.vstack(blocks, format="csr")
    matrix.indices = matrix.indices.astype(np.int32)
    matrix.indptr = matrix.indptr.astype(np.int64)
    return matrix


def seed_dense_float64(X: sp.csr_matrix, table64: np.ndarray) -> np.ndarray:
    dense = X.toarray().astype(np.float64)
    return (dense / dense.sum(1, keepdims=True)) @ table64


def seed_dense_float32(X: sp.csr_matrix, table: np.ndarray) -> np.ndarray:
    dense = X.toarray()
    return (dense / dense.sum(1, keepdims=True)) @ table


def torch_csr(X: sp.csr_matrix, table: np.ndarray, column_block: int | None) -> np.ndarray:
    import torch

    sparse = torch.sparse_csr_tensor(
        torch.from_numpy(X.indptr),
        torch.from_numpy(X.indices.astype(np.int64)),
        torch.from_numpy(X.data),
        size=X.shape,
    )
    if column_block is None:
        return (sparse @ torch.from_numpy(table)).numpy()
    out = np.empty((X.shape[0], table.shape[1]), dtype=np.float32)
    for start in range(0, table.shape[1], column_block):
        block = torch.from_numpy(np.ascontiguousarray(table[:, start : start + column_block]))
        out[:, start : start + column_block] = (sparse @ block).numpy()
    return out


def numba_kernel(X: sp.csr_matrix, table: np.ndarray) -> np.ndarray:
    from scelmo._numba_kernel import csr_tiles_product, tile_table

    out = np.empty((X.shape[0], table.shape[1]), dtype=np.float32)
    csr_tiles_product(X.indptr, X.indices, X.data, tile_table(table), out)
    return out


def lazy_dask_counts(n_cells: int, n_genes: int, nnz_per_cell: int, chunk: int):
    import dask
    import dask.array as da

    blocks = []
    for i, start in enumerate(range(0, n_cells, chunk)):
        rows = min(chunk, n_cells - start)
        delayed = dask.delayed(random_counts)(rows, n_genes, nnz_per_cell, 10_000 + i)
        blocks.append(
            da.from_delayed(
                delayed,
                shape=(rows, n_genes),
                dtype=np.float32,
                meta=sp.csr_matrix((0, n_genes), dtype=np.float32),
            )
        )
    return da.concatenate(blocks, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--nnz", type=int, default=1500, help="non-zeros per cell")
    parser.add_argument("--seed-cells", type=int, default=10_000, help="slice for the dense seed formulas")
    parser.add_argument("--skip-scipy", action="store_true", help="skip scipy's (slow) product")
    parser.add_argument(
        "--skip-slow", action="store_true", help="skip scipy's and torch's single-call products"
    )
    parser.add_argument("--million", action="store_true", help="also run 1M cells over a dask array")
    parser.add_argument("--million-cells", type=int, default=1_000_000)
    parser.add_argument("--only-million", action="store_true", help="skip the 100k comparison")
    parser.add_argument("--quick", action="store_true", help="10k cells, 384-d, seed slice 2k")
    args = parser.parse_args()
    if args.quick:
        args.cells, args.dim, args.seed_cells = 10_000, 384, 2_000

    import scelmo as se

    rng = np.random.default_rng(1)
    table = rng.standard_normal((args.genes, args.dim)).astype(np.float32)
    genes = [f"G{i}" for i in range(args.genes)]
    gene_table = se.GeneEmbeddings(genes, table)
    if not args.only_million:
        compare(args, table, genes, gene_table)
    if args.million or args.only_million:
        million(args, genes, gene_table)


def compare(args, table, genes, gene_table) -> None:
    """The 100k-cell comparison: every method on the same CSR matrix, in this process."""
    import anndata as ad
    import pandas as pd

    import scelmo as se

    print(
        f"data: {args.cells:,} cells x {args.genes:,} genes, ~{args.nnz} non-zeros per cell; "
        f"table {args.genes:,} x {args.dim}",
        flush=True,
    )
    X = random_counts(args.cells, args.genes, args.nnz, seed=0)
    adata = ad.AnnData(X, var=pd.DataFrame(index=genes))
    print(f"CSR: {X.nnz:,} non-zeros, {gib(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)}", flush=True)

    seed_slice = X[: args.seed_cells]
    scale = args.cells / args.seed_cells
    rows = []

    def timed(func):
        cpu = time.process_time()
        m = measure(func)
        m.cpu_seconds = time.process_time() - cpu
        return m

    def record(name, m, scaled=1.0, note=""):
        rows.append((name, m.seconds * scaled, m.peak_bytes * scaled, note))
        print(
            f"  {name:<42} {m.seconds * scaled:8.2f} s  cpu {m.cpu_seconds * scaled:8.2f} s  "
            f"{gib(m.peak_bytes * scaled):>10}  {note}",
            flush=True,
        )

    print(f"  {'':<42} {'wall':>10}  {'cpu (all threads)':>14}  {'peak RSS':>10}", flush=True)

    table64 = table.astype(np.float64)
    note = f"measured on {args.seed_cells:,} cells, scaled x{scale:g}"
    record(
        "seed: dense float64 (published)",
        timed(lambda: seed_dense_float64(seed_slice, table64)),
        scale,
        note,
    )
    record("seed: dense float32", timed(lambda: seed_dense_float32(seed_slice, table)), scale, note)
    if not (args.skip_scipy or args.skip_slow):
        record("scipy CSR @ dense", timed(lambda: X @ table))
    if not args.skip_slow:
        record("torch CSR @ dense (one call)", timed(lambda: torch_csr(X, table, None)))
    record("torch CSR @ 64-column table blocks", timed(lambda: torch_csr(X, table, 64)))
    began = time.perf_counter()
    numba_kernel(X[:64], table[:, :64])
    print(
        f"  (numba kernel: first call {time.perf_counter() - began:.2f} s, compile or cache load)",
        flush=True,
    )
    record("numba CSR @ 64-column tiles, 512-gene blocks", timed(lambda: numba_kernel(X, table)))
    ours = timed(lambda: se.tl.elmo_embed(adata, gene_table, progress=False, min_coverage=0))
    record("scelmo.tl.elmo_embed (wa, float32)", ours)
    print(f"  elmo_embed backend: {adata.uns['X_elmo']['params']['backend']}", flush=True)

    check = seed_dense_float64(X[:500], table64)
    error = np.linalg.norm(adata.obsm["X_elmo"][:500] - check, axis=1) / np.linalg.norm(check, axis=1)
    print(f"\nmax relative error vs seed (first 500 cells): {error.max():.2e}")

    by_name = {name: (seconds, peak) for name, seconds, peak, _ in rows}
    ours_s, ours_mem = by_name["scelmo.tl.elmo_embed (wa, float32)"]
    seed_s, seed_mem = by_name["seed: dense float64 (published)"]
    products = {
        k: v
        for k, v in by_name.items()
        if k not in ("seed: dense float64 (published)", "scelmo.tl.elmo_embed (wa, float32)")
    }
    fastest_name, (fastest_s, _) = min(products.items(), key=lambda kv: kv[1][0])
    print(f"speed-up vs seed (dense float64):       {seed_s / ours_s:6.1f}x   (target >= 5x)")
    print(f"memory reduction vs seed:               {seed_mem / max(ours_mem, 1):6.1f}x   (target >= 10x)")
    print(f"time vs fastest other product ({fastest_name}): {ours_s / fastest_s:.2f}x   (target <= 1.5x)")


def million(args, genes, gene_table) -> None:
    """``elmo_embed`` over a lazily generated dask array of ``--million-cells`` cells."""
    import anndata as ad
    import dask
    import pandas as pd

    import scelmo as se

    dask.config.set(scheduler="synchronous")  # one block in memory at a time
    n = args.million_cells
    lazy = lazy_dask_counts(n, args.genes, args.nnz, chunk=20_000)
    big = ad.AnnData(lazy, var=pd.DataFrame(index=genes))
    print(
        f"\n{n:,} cells x {args.genes:,} genes over a lazily generated dask array (blocks of 20,000 cells), "
        f"table dim {args.dim}:",
        flush=True,
    )
    m = measure(lambda: se.tl.elmo_embed(big, gene_table, progress=True, min_coverage=0))
    output = big.obsm["X_elmo"].nbytes
    print(
        f"  elmo_embed: {m.seconds:.1f} s (includes generating the data), peak {gib(m.peak_bytes)} "
        f"(output alone {gib(output)}); target < 8 GiB"
    )


if __name__ == "__main__":
    main()
