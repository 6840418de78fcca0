"""Synthetic single-cell data with real structure, at any size: resampled pbmc68k_reduced cells.

Scale tests need tens of thousands of cells with real genes and real cell types, offline. Each
synthetic cell starts from a real cell of scanpy's ``pbmc68k_reduced`` (700 cells x 765 genes,
10 ``bulk_labels``): its expression profile is mixed with that of another real cell of the same
type, and counts are drawn from the mix (Poisson) at a library size near the source cell's.
Marker genes, co-expression and the types' proportions are the real ones; no two synthetic cells
are equal, and cells drawn from the same source cell share it in ``obs["source"]`` so that a
train/test split can keep sources apart (a query cell's nearest neighbour is otherwise often a
copy of its own source cell, which makes label transfer look better than it is).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

#: scanpy's pbmc68k_reduced normalised each cell to this total before log1p.
TARGET_SUM = 1e4


def source_counts() -> tuple[np.ndarray, pd.DataFrame, pd.Index]:
    """Pseudo-counts of pbmc68k_reduced's 765 genes (cells x genes), its ``obs`` and gene names.

    ``raw.X`` is ``log1p(counts / n_counts * 1e4)``; ``expm1`` undoes the log and ``n_counts``
    (total counts over all genes) the scaling, which gives back near-integer counts.
    """
    pbmc = sc.datasets.pbmc68k_reduced()
    expression = np.expm1(pbmc.raw.X.toarray().astype(np.float64))
    counts = expression * pbmc.obs["n_counts"].to_numpy()[:, None] / TARGET_SUM
    return counts, pbmc.obs.copy(), pd.Index(pbmc.raw.var_names)


def resampled_pbmc68k(
    n_obs: int = 10_000,
    *,
    seed: int = 0,
    mate_weight: float = 0.3,
    depth_sd: float = 0.25,
) -> AnnData:
    """``n_obs`` synthetic cells resampled from pbmc68k_reduced (see the module docstring).

    Parameters
    ----------
    n_obs
        Cells to make.
    seed
        Seed of every random draw: the same arguments give the same cells.
    mate_weight
        Weight of the second real cell (same type) in each cell's expression profile.
    depth_sd
        Standard deviation of the log library size around the source cell's.

    Returns
    -------
    Cells x 765 genes: ``X`` log-normalised (``normalize_total`` to 1e4, ``log1p``, CSR
    float32, as pbmc68k_reduced's ``raw.X``), ``layers["counts"]`` the drawn counts,
    ``obs["bulk_labels"]`` (the source cell's type, same categories), ``obs["source"]`` (index
    of the source cell in pbmc68k_reduced), ``obs["n_counts"]``.

    Examples
    --------
    >>> adata = resampled_pbmc68k(2_000, seed=1)
    >>> adata.shape
    (2000, 765)
    """
    rng = np.random.default_rng(seed)
    counts, obs, genes = source_counts()
    labels = obs["bulk_labels"]
    source = rng.integers(0, len(obs), size=n_obs)  # real proportions of the types
    mate = np.empty_like(source)
    for label in labels.cat.categories:
        members = np.flatnonzero(labels.to_numpy() == label)
        here = labels.to_numpy()[source] == label
        mate[here] = rng.choice(members, size=int(here.sum()))
    totals = counts.sum(axis=1)
    profiles = (1 - mate_weight) * counts[source] / totals[source, None]
    profiles += mate_weight * counts[mate] / totals[mate, None]
    depth = totals[source] * np.exp(rng.normal(0.0, depth_sd, size=n_obs))
    drawn = rng.poisson(profiles * depth[:, None]).astype(np.float32)
    # A cell with no count in these genes has no profile to normalise: draw it again from its source.
    empty = drawn.sum(axis=1) == 0
    while empty.any():
        drawn[empty] = rng.poisson(profiles[empty] * depth[empty, None])
        empty = drawn.sum(axis=1) == 0
    n_counts = drawn.sum(axis=1)
    log_normalised = np.log1p(drawn / n_counts[:, None] * TARGET_SUM).astype(np.float32)
    frame = pd.DataFrame(
        {
            "bulk_labels": pd.Categorical(labels.to_numpy()[source], categories=labels.cat.categories),
            "source": source,
            "n_counts": n_counts,
        },
        index=[f"cell{i}" for i in range(n_obs)],
    )
    adata = AnnData(sparse.csr_matrix(log_normalised), obs=frame, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = sparse.csr_matrix(drawn)
    return adata


def split_by_source(adata: AnnData, fraction: float = 0.3, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (reference, query): the query holds ``fraction`` of the source cells of each type.

    No source cell has descendants on both sides, so a query cell's type is learnt from other
    real cells only.
    """
    rng = np.random.default_rng(seed)
    sources = adata.obs[["source", "bulk_labels"]].drop_duplicates("source")
    held_out = []
    for _, group in sources.groupby("bulk_labels", observed=True):
        n = max(1, round(fraction * len(group)))
        held_out += list(rng.choice(group["source"].to_numpy(), size=n, replace=False))
    query = adata.obs["source"].isin(held_out).to_numpy()
    return ~query, query


def random_token_matrix(n_cells: int, seed: int = 0) -> sparse.csr_matrix:
    """Random rank-value token rows (0-299 distinct Geneformer ids each), as a CSR token matrix."""
    from scelmo.cell_tokens import CellTokens

    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 300, size=n_cells)
    tokens = [rng.choice(np.arange(2, 25426), size=n, replace=False) for n in lengths]
    return CellTokens(
        np.concatenate([[0], np.cumsum(lengths)]), np.concatenate(tokens).astype(np.int16)
    ).to_sparse()
