"""The real 10x sample inside the ``celltypist`` wheel, and evaluation labels for it.

The sample (``celltypist/data/samples/sample_cell_by_gene.csv`` in ``celltypist==1.7.1``) is
559 immune cells x 32,786 genes with integer UMI counts and no labels. Two benchmarks use it:
``langcell.py`` for real full-transcriptome token sequences, and ``annotation.py`` as a second
dataset on which to check the zero-shot defaults chosen on pbmc68k_reduced.

Its evaluation labels come from canonical marker genes (:data:`EVALUATION_MARKERS`): each
cell's best marker score (``scanpy.tl.score_genes`` on log-normalised counts), then a majority
vote over the cell and its 15 nearest neighbours, so that single noisy cells follow their
neighbourhood. The marker lists are only for scoring; no method under test sees them.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from pathlib import Path

import numpy as np

CELLTYPIST_VERSION = "1.7.1"
CELLTYPIST_SAMPLE = "data/samples/sample_cell_by_gene.csv"

#: Canonical markers per Cell Ontology class; used to make evaluation labels, never by a method.
EVALUATION_MARKERS = {
    "T cell": ["CD3D", "CD3E", "CD3G", "CD2", "TRAC"],
    "natural killer cell": ["NKG7", "GNLY", "KLRD1", "KLRF1", "PRF1"],
    "B cell": ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1"],
    "monocyte": ["CD14", "VCAN", "S100A8", "S100A9", "FCN1"],
    "macrophage": ["APOE", "C1QA", "C1QB", "TREM2", "GPNMB", "SPP1"],
}


def celltypist_counts():
    """The real 10x sample shipped in the ``celltypist`` wheel: 559 cells x 32,786 genes, integer UMI counts.

    The file is located without importing celltypist (``pip install --no-deps celltypist==1.7.1``).
    Its values are integers up to float rounding (1e-11), so they are rounded.
    """
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    spec = importlib.util.find_spec("celltypist")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "This benchmark needs the celltypist wheel's sample data: "
            f"pip install --no-deps celltypist=={CELLTYPIST_VERSION}"
        )
    version = importlib.metadata.version("celltypist")
    if version != CELLTYPIST_VERSION:
        warnings.warn(
            f"celltypist {version} installed; the figures were measured with {CELLTYPIST_VERSION}",
            stacklevel=2,
        )
    path = Path(spec.submodule_search_locations[0]) / CELLTYPIST_SAMPLE
    frame = pd.read_csv(path, index_col=0)
    counts = sp.csr_matrix(np.rint(frame.to_numpy()).astype(np.float32))
    return ad.AnnData(counts, obs=pd.DataFrame(index=frame.index), var=pd.DataFrame(index=frame.columns))


def labelled_sample(min_cells: int = 3):
    """The sample with log-normalised ``X``, counts in ``layers['counts']`` and ``obs['evaluation_label']``.

    Genes detected in fewer than ``min_cells`` cells are dropped (9,810 of 32,786 remain), which
    spares embedding the text of genes that carry no signal here.
    """
    import scanpy as sc

    adata = celltypist_counts()
    sc.pp.filter_genes(adata, min_cells=min_cells)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.obs["evaluation_label"] = evaluation_labels(adata)
    return adata


def evaluation_labels(adata) -> np.ndarray:
    """Marker-score labels of log-normalised cells, smoothed by a vote over 15 nearest neighbours."""
    import scanpy as sc

    scored = adata.copy()
    classes = list(EVALUATION_MARKERS)
    for name, genes in EVALUATION_MARKERS.items():
        sc.tl.score_genes(
            scored, [g for g in genes if g in scored.var_names], score_name=name, random_state=0
        )
    best = scored.obs[classes].to_numpy().argmax(axis=1)
    sc.pp.highly_variable_genes(scored, n_top_genes=2000)
    sc.pp.pca(scored, n_comps=30, mask_var="highly_variable", random_state=0)
    sc.pp.neighbors(scored, n_neighbors=15, random_state=0)
    graph = scored.obsp["connectivities"].tolil()
    graph.setdiag(1.0)
    votes = graph.tocsr() @ np.eye(len(classes))[best]
    return np.asarray(classes)[np.asarray(votes).argmax(axis=1)]
