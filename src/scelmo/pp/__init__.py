"""Preprocessing: gene text, gene embedding tables, cell tokens, orthologs."""

from ._build_gene_embeddings import build_gene_embeddings
from ._celltype_descriptions import celltype_descriptions
from ._gene_descriptions import gene_descriptions
from ._orthologs import map_orthologs
from ._tokenize import tokenize

__all__ = [
    "build_gene_embeddings",
    "celltype_descriptions",
    "gene_descriptions",
    "map_orthologs",
    "tokenize",
]
