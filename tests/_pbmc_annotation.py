"""Shared test data for annotation on pbmc68k_reduced: marker texts, coarse groups, a stand-in encoder."""

from __future__ import annotations

import hashlib

import numpy as np

from scelmo.text import TextEncoder

#: Four coarse classes described by their canonical marker genes (texts for zero-shot tests).
MARKERS = {
    "B cell": "CD79A CD79B MS4A1",
    "NK cell": "GNLY NKG7 GZMB",
    "T cell": "CD3D CD3E IL7R",
    "monocyte": "LYZ S100A8 CST3",
}
#: ``bulk_labels`` -> the coarse classes above (CD34+ has none).
COARSE = {
    "CD19+ B": "B cell",
    "CD56+ NK": "NK cell",
    "CD14+ Monocyte": "monocyte",
    "Dendritic": "monocyte",
    "CD4+/CD25 T Reg": "T cell",
    "CD4+/CD45RA+/CD25- Naive T": "T cell",
    "CD4+/CD45RO+ Memory": "T cell",
    "CD8+ Cytotoxic T": "T cell",
    "CD8+/CD45RA+ Naive Cytotoxic": "T cell",
}


class BagOfWords(TextEncoder):
    """A deterministic stand-in encoder: each word is a fixed random direction."""

    name = "bag-of-words"

    def __init__(self, model: str = "hash-v1", dim: int = 64) -> None:
        self.model = model
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self.model}:{word}".encode()).digest()[:8], "little")
        return np.random.default_rng(seed).normal(size=self._dim)

    def encode_batches(self, texts, *, progress=False):
        vectors = np.stack([sum(self._word(w) for w in t.replace(".", " ").split()) for t in texts])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        yield np.arange(len(texts)), vectors.astype(np.float32)


def symbol_table(genes):
    """A gene table whose 'text' is each gene's symbol, embedded by :class:`BagOfWords`."""
    import scelmo as se

    genes = list(genes)
    return se.pp.build_gene_embeddings(
        genes, source={g: g for g in genes}, encoder=BagOfWords(), cache=False, progress=False
    )
