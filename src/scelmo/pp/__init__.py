"""Preprocessing: gene text, gene embedding tables, cell tokens."""

from ._build_gene_embeddings import build_gene_embeddings
from ._gene_descriptions import gene_descriptions
from ._tokenize import tokenize

__all__ = ["build_gene_embeddings", "gene_descriptions", "tokenize"]
