"""Atlas scale: ``elmo_embed`` (and tokenize + LangCell) through a dask.distributed cluster.

``elmo``: a lazily generated ``--cells`` x 20,000-gene dask matrix (about 1,500 non-zeros per
cell, log1p of counts, generated inside the tasks from a seed per block, so no process ever
holds the matrix), embedded with a 1536-d table by ``se.tl.elmo_embed`` and written to zarr by
the workers (the output is never gathered in one process). Printed beside it: the in-process
kernel on the same blocks in this process (the same generator, then ``weighted_gene_average``),
so the ratio is cluster cells/s over in-process cells/s for the same work. A background thread
samples every worker's resident memory (and this process's) to report peaks.

``langcell``: the same for ``pp.tokenize`` + ``tl.langcell_encode`` with a small random LangCell
(2 layers) on ``--cells`` cells of integer counts.

Run (2 workers, 2 GiB each, the issue's cluster)::

    python benchmarks/scale.py elmo --cells 100000 300000 1000000 --workers 1 2
    python benchmarks/scale.py langcell --cells 200000 --workers 2

Each worker runs one thread and numba/BLAS one thread, so 2 workers use the 2 cores that the
in-process kernel uses with 2 threads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

warnings.filterwarnings("ignore", category=UserWarning)

N_GENES = 20_000
NNZ_PER_CELL = 1_500
DIM = 1536
BLOCK = 10_000


def generated_block(
    seed: int, n_cells: int, n_genes: int = N_GENES, nnz: int = NNZ_PER_CELL, counts: bool = False
) -> sp.csr_matrix:
    """``n_cells`` cells of log1p counts (raw counts if ``counts``), about ``nnz`` distinct genes each."""
    rng = np.random.default_rng(seed)
    # Genes drawn with replacement from a power law (inverse CDF of p(k) ~ k^-0.6, fast), then
    # made unique per cell: about nnz distinct genes, many shared by all cells as in real data.
    draws = np.floor(n_genes * rng.random((n_cells, int(nnz * 1.15))) ** (1 / 0.4)).astype(np.int32)
    genes = np.sort(np.minimum(draws, n_genes - 1), axis=1)
    keep = np.ones_like(genes, dtype=bool)
    keep[:, 1:] = genes[:, 1:] != genes[:, :-1]
    lengths = keep.sum(axis=1)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    values = rng.geometric(0.4, size=int(indptr[-1])).astype(np.float32)
    values = values if counts else np.log1p(values)
    return sp.csr_matrix((values, genes[keep].astype(np.int32), indptr), shape=(n_cells, n_genes))


def lazy_matrix(n_cells: int, block: int = BLOCK, counts: bool = False):
    """A dask array whose blocks are generated in the tasks."""
    import dask
    import dask.array as da

    pieces = []
    for index, start in enumerate(range(0, n_cells, block)):
        rows = min(block, n_cells - start)
        task = dask.delayed(generated_block, pure=True)(index, rows, counts=counts)
        pieces.append(
            da.from_delayed(
                task, shape=(rows, N_GENES), dtype=np.float32, meta=sp.csr_matrix((0, 0), dtype=np.float32)
            )
        )
    return da.concatenate(pieces, axis=0)


class MemorySampler:
    """Peak resident memory of each worker and of this process, sampled every ``interval`` s."""

    def __init__(self, client, interval: float = 0.25) -> None:
        self.client, self.interval = client, interval
        self.peaks: dict[str, float] = {}
        self.local_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            try:
                for worker, rss in self.client.run(
                    lambda: __import__("psutil").Process().memory_info().rss
                ).items():
                    self.peaks[worker] = max(self.peaks.get(worker, 0.0), rss / 2**30)
            except (OSError, TimeoutError):  # a worker restarting: sample again next time
                pass
            self.local_peak = max(self.local_peak, me.memory_info().rss / 2**30)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def in_process(n_cells: int, table: np.ndarray) -> tuple[float, float]:
    """Seconds to generate and to embed ``n_cells`` cells block by block in this process."""
    from scelmo.cell_embedding import weighted_gene_average

    generate = embed = 0.0
    for index, start in enumerate(range(0, n_cells, BLOCK)):
        t0 = time.perf_counter()
        block = generated_block(index, min(BLOCK, n_cells - start))
        t1 = time.perf_counter()
        weighted_gene_average(block, table, progress=False)
        embed += time.perf_counter() - t1
        generate += t1 - t0
    return generate, embed


def cluster(n_workers: int, memory_limit: str):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=None,
        env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    )


def run_elmo(cells: list[int], workers: list[int], memory_limit: str, reference_cells: int) -> None:
    import anndata as ad

    import scelmo as se

    rng = np.random.default_rng(0)
    genes = [f"GENE{i}" for i in range(N_GENES)]
    table = se.GeneEmbeddings(genes, rng.normal(size=(N_GENES, DIM)).astype(np.float32))
    aligned = table.align(genes).matrix
    weighted_gene_average_warmup = generated_block(10_000_000, 100)
    from scelmo.cell_embedding import weighted_gene_average

    weighted_gene_average(weighted_gene_average_warmup, aligned, progress=False)  # numba compiles once
    generate, embed = in_process(reference_cells, aligned)
    print(
        f"in-process ({reference_cells:,} cells, 2 threads): generate {reference_cells / generate:,.0f} cells/s, "
        f"kernel {reference_cells / embed:,.0f} cells/s, both {reference_cells / (generate + embed):,.0f} cells/s"
    )
    reference_rate = reference_cells / (generate + embed)

    def job(n_cells: int, out: Path) -> None:
        adata = ad.AnnData(lazy_matrix(n_cells))
        adata.var_names = genes
        se.tl.elmo_embed(adata, table, progress=False)
        adata.obsm["X_elmo"].to_zarr(str(out))

    def warm_up(client) -> None:
        client.run(
            lambda: weighted_gene_average(weighted_gene_average_warmup, aligned[:, :8], progress=False)
        )

    cluster_runs(job, cells, workers, memory_limit, reference_rate, warm_up)


def cluster_runs(
    job, cells: list[int], workers: list[int], memory_limit: str, reference_rate: float, warm_up=None
) -> None:
    """Run ``job(n_cells, zarr_path)`` on clusters of each size; print wall time, rate and peak memory."""
    from distributed import Client

    print("workers  cells       wall s   cells/s   vs in-process  peak worker GiB  peak client GiB")
    for n_workers in workers:
        with cluster(n_workers, memory_limit) as local, Client(local) as client:
            if warm_up is not None:
                warm_up(client)
            for n_cells in cells:
                out = Path(tempfile.mkdtemp(prefix="scale_")) / "embeddings.zarr"
                with MemorySampler(client) as memory:
                    start = time.perf_counter()
                    job(n_cells, out)
                    wall = time.perf_counter() - start
                rate = n_cells / wall
                print(
                    f"{n_workers:>7}  {n_cells:>10,}  {wall:>7.1f}  {rate:>8,.0f}  {rate / reference_rate:>13.2f}x"
                    f"  {max(memory.peaks.values()):>15.2f}  {memory.local_peak:>15.2f}"
                )
                shutil.rmtree(out.parent)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("job", choices=["elmo", "langcell"])
    parser.add_argument("--cells", type=int, nargs="+", default=[100_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--memory-limit", default="2GiB")
    parser.add_argument(
        "--reference-cells", type=int, default=100_000, help="cells for the in-process baseline"
    )
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    if args.job == "elmo":
        run_elmo(args.cells, args.workers, args.memory_limit, args.reference_cells)
    else:
        run_langcell(args.cells, args.workers, args.memory_limit)


#: The small random LangCell of the throughput run (2 layers), and its token budget per cell.
SMALL_CELL = {
    "vocab_size": 25427,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "hidden_act": "relu",
    "max_position_embeddings": 2048,
}
SMALL_TEXT = {
    "vocab_size": 128,
    "hidden_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}
MAX_LENGTH = 256


def run_langcell(cells: list[int], workers: list[int], memory_limit: str) -> None:
    """``pp.tokenize`` + ``tl.langcell_encode`` on generated counts through the cluster, beside in-process."""
    import anndata as ad
    import torch

    import scelmo as se
    from scelmo.cell_tokens import match_genes, rank_value_encode
    from scelmo.models import LangCell
    from scelmo.models.langcell import encode_cell_tokens

    dictionaries = se.datasets.geneformer_dictionaries(progressbar=False)
    genes = sorted(dictionaries.token_ids, key=dictionaries.token_ids.get)[2 : 2 + N_GENES]
    torch.manual_seed(0)
    model = LangCell.from_config(SMALL_CELL, SMALL_TEXT).eval()
    match = match_genes(genes, dictionaries, hgnc_fallback=False)
    reference = 2 * BLOCK
    tokenize = encode = 0.0
    for index in range(reference // BLOCK):
        block = generated_block(index, BLOCK, counts=True)
        t0 = time.perf_counter()
        tokens, _ = rank_value_encode(block, match, max_length=MAX_LENGTH)
        t1 = time.perf_counter()
        encode_cell_tokens(model, tokens, progress=False)
        encode += time.perf_counter() - t1
        tokenize += t1 - t0
    reference_rate = reference / (tokenize + encode)
    print(
        f"in-process ({reference:,} cells, {torch.get_num_threads()} threads, generation excluded): tokenize "
        f"{reference / tokenize:,.0f} cells/s, encode {reference / encode:,.0f} cells/s, both {reference_rate:,.0f} cells/s"
    )

    def job(n_cells: int, out: Path) -> None:
        adata = ad.AnnData(lazy_matrix(n_cells, counts=True))
        adata.var_names = genes
        se.pp.tokenize(adata, dictionaries=dictionaries, max_length=MAX_LENGTH, hgnc_fallback=False)
        se.tl.langcell_encode(adata, model, progress=False)
        adata.obsm["X_langcell"].to_zarr(str(out))

    cluster_runs(job, cells, workers, memory_limit, reference_rate)


if __name__ == "__main__":
    main()
