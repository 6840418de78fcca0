"""Explanations (``tl.explain_annotation``): are they exact, and are they faithful?

Data: ``pbmc68k_reduced`` (700 cells, 765 genes), the offline gene table, four marker classes.

1. Exactness: for zero-shot elmo (``score="genes"`` and ``"cell"``) the gene terms of every
   (cell, class) pair sum to the class score; for kNN the listed neighbours and their vote
   shares are the ones that voted (compared with a brute-force cosine search).
2. Faithfulness (``--cells N``): for N random cells, zero the 10 genes that explain the cell's
   label best, or 10 random expressed genes, annotate again (the whole pipeline: standardisation,
   signatures, refinement), and compare the drop of the cell's score for its class.

Run ``python benchmarks/explain_faithfulness.py --cells 50`` (about 2 minutes on 2 cores).
"""

import sys
import time
import warnings

import anndata as ad
import numpy as np
import scanpy as sc

import scelmo as se

warnings.filterwarnings("ignore")
N = int(sys.argv[sys.argv.index("--cells") + 1]) if "--cells" in sys.argv else 20
adata = sc.datasets.pbmc68k_reduced()
table = se.pp.build_gene_embeddings(adata.raw.var_names, progress=False)
markers = {
    "B cell": "CD79A+ MS4A1+ B cell",
    "NK cell": "GNLY+ NKG7+ natural killer cell",
    "T cell": "CD3E+ IL7R+ T cell",
    "monocyte": "LYZ+ S100A8+ CD14+ monocyte",
}
# smooth=0: with smoothing a cell's score also reads its neighbours, which this test leaves as they are
se.tl.zeroshot_annotate(adata, markers, gene_embeddings=table, smooth=0)
x = adata.raw.X.toarray()
rng = np.random.default_rng(0)
rows = rng.choice(adata.n_obs, N, replace=False)
top_drops, random_drops = [], []
t = time.time()
for row in rows:
    cell = adata.obs_names[row]
    frame = se.tl.explain_annotation(adata, cells=[cell], gene_embeddings=table, n_top=10)
    cls, score = frame["class"].iloc[0], frame["score"].iloc[0]
    top = adata.raw.var_names.get_indexer(frame["feature"])
    pool = np.setdiff1d(np.flatnonzero(x[row] > 0), top)
    for removed, drops in ((top, top_drops), (rng.choice(pool, 10, replace=False), random_drops)):
        changed = x.copy()
        changed[row, removed] = 0
        other = ad.AnnData(adata.X, obs=adata.obs[["bulk_labels"]].copy(), var=adata.var)
        other.raw = ad.AnnData(changed, var=adata.raw.var)
        se.tl.zeroshot_annotate(other, markers, gene_embeddings=table, smooth=0)
        after = se.tl.explain_annotation(other, cells=[cell], classes=cls, gene_embeddings=table, n_top=1)
        drops.append(score - after["score"].iloc[0])
top_drops, random_drops = np.array(top_drops), np.array(random_drops)
print(
    f"{N} cells ({time.time() - t:.0f} s): score drop, top-10 genes zeroed: mean {top_drops.mean():.3f} "
    f"(median {np.median(top_drops):.3f}); 10 random expressed genes zeroed: mean {random_drops.mean():.3f} "
    f"(median {np.median(random_drops):.3f}); top > random in {(top_drops > random_drops).sum()}/{N} cells"
)

# --- exactness ---
adata = sc.datasets.pbmc68k_reduced()
se.tl.elmo_embed(adata, table, progress=False)
for score in ("genes", "cell"):
    se.tl.zeroshot_annotate(adata, markers, gene_embeddings=table, score=score)
    f = se.tl.explain_annotation(adata, gene_embeddings=table, classes="all", n_top=None)
    s = f.groupby(["cell", "class"]).agg(total=("contribution", "sum"), score=("score", "first"))
    print(
        f"elmo score={score!r}: {len(s)} (cell, class) pairs, max |sum of gene terms - class score| = {(s.total - s.score).abs().max():.1e}"
    )
ref, query = adata[:500].copy(), adata[500:].copy()
se.tl.knn_annotate(query, ref, "bulk_labels", use_rep="X_elmo", k=10)
f = se.tl.explain_annotation(query, "knn", classes="all", reference=ref, n_top=None)
shares = f.pivot_table(index="cell", columns="class", values="contribution", aggfunc="sum", fill_value=0)
probs = query.obsm["knn_probs"][query.obs_names.get_indexer(shares.index)][
    :, [query.uns["knn"]["classes"].index(c) for c in shares.columns]
]
r = ref.obsm["X_elmo"] / np.linalg.norm(ref.obsm["X_elmo"], axis=1, keepdims=True)
q = query.obsm["X_elmo"] / np.linalg.norm(query.obsm["X_elmo"], axis=1, keepdims=True)
exact = np.argsort(-(q @ r.T), axis=1)[:, :10]
same = np.mean(
    [
        set(f.loc[f.cell == c, "feature"]) == set(ref.obs_names[exact[i]])
        for i, c in enumerate(query.obs_names)
    ]
)
print(
    f"kNN: {query.n_obs} cells, max |vote shares - obsm['knn_probs']| = {np.abs(shares.to_numpy() - probs).max():.1e}; "
    f"listed neighbours = brute-force cosine 10-NN for {same:.1%} of cells"
)
