"""Preprocessing: gene text, gene embedding tables, cell tokens."""

from ._build_gene_embeddings import build_gene_embeddings
from ._celltype_descriptions import celltype_descriptions
from ._gene_descriptions import gene_descriptions
from ._tokenize import tokenize

__all__ = [
    "build_gene_embeddings",
    "celltype_descriptions",
    "gene_descriptions",
    "tokenize",
]
