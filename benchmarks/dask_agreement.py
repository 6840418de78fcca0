"""Dask input gives the in-memory annotations: the largest probability difference, the share of equal
labels, and how many passes (dask computations) each path makes over the matrix.

Data: ``pbmc68k_reduced`` (700 cells x 765 genes, chunks of 150 cells), a bag-of-words gene table
and encoder (the tests' ``BagOfWords``, so nothing is downloaded). Zero-shot elmo with
``score="genes"`` (several refinement settings) and ``score="cell"`` on a lazy ``X_elmo``, and kNN
with a lazy query against an in-memory reference.

Run ``python benchmarks/dask_agreement.py`` from the repository root (a minute).
"""

import sys

sys.path.insert(0, "tests")

import warnings

import dask
import dask.array as da
import numpy as np
import scanpy as sc
import scipy.sparse as sp
from _pbmc_annotation import MARKERS, BagOfWords, symbol_table
from anndata import AnnData

import scelmo as se

warnings.simplefilter("ignore")
pbmc = sc.datasets.pbmc68k_reduced()
genes = list(pbmc.raw.var_names)
table = symbol_table(genes)
X = sp.csr_matrix(pbmc.raw.X).astype(np.float32)


def mk(x):
    a = AnnData(x)
    a.var_names = genes
    a.obs_names = [f"c{i}" for i in range(x.shape[0])]
    if x.shape[0] == pbmc.n_obs:
        # zero-shot smoothing reads this graph; a dask matrix without one is not smoothed
        a.obsp["connectivities"] = pbmc.obsp["connectivities"]
    return a


class Count(dask.callbacks.Callback):
    n = 0

    def _start(self, dsk):
        Count.n += 1


def report(name, eager, lazy, key):
    d = np.abs(eager.obsm[key + "_probs"] - lazy.obsm[key + "_probs"])
    d = np.nanmax(d)
    print(
        f"{name:38s} max|dprob|={d:.1e} labels equal {(eager.obs[key].astype(str) == lazy.obs[key].astype(str)).mean():.3f}  passes={Count.n}"
    )


for opts in [{"refine": 0}, {"refine": 3}, {"refine": 2, "rematch": True}, {"refine": 2, "abstain": True}]:
    eager, lazy = mk(X), mk(da.from_array(X, chunks=(150, 765)))
    kw = dict(gene_embeddings=table, encoder=BagOfWords(), n_genes=5, unspell=False, cache=False, **opts)
    se.tl.zeroshot_annotate(eager, MARKERS, **kw)
    Count.n = 0
    with Count():
        se.tl.zeroshot_annotate(lazy, MARKERS, **kw)
    report(f"elmo genes {opts}", eager, lazy, "zeroshot")
eager, lazy = mk(X), mk(da.from_array(X, chunks=(150, 765)))
se.tl.elmo_embed(eager, table, progress=False)
se.tl.elmo_embed(lazy, table, progress=False)
se.tl.zeroshot_annotate(eager, MARKERS, encoder=BagOfWords(), score="cell", cache=False)
Count.n = 0
with Count():
    se.tl.zeroshot_annotate(lazy, MARKERS, encoder=BagOfWords(), score="cell", cache=False)
report("elmo cell (lazy X_elmo)", eager, lazy, "zeroshot")
ref = mk(X[:300])
ref.obs["ct"] = pbmc.obs.bulk_labels.to_numpy()[:300]
se.tl.elmo_embed(ref, table, progress=False)
eq, lq = mk(X[300:]), mk(da.from_array(X[300:], chunks=(100, 765)))

for a in (eq, lq):
    se.tl.elmo_embed(a, table, progress=False)
se.tl.knn_annotate(eq, ref, "ct", n_threads=1)
Count.n = 0
with Count():
    se.tl.knn_annotate(lq, ref, "ct", n_threads=1)
report("knn (lazy X_elmo, reference in memory)", eq, lq, "knn")
