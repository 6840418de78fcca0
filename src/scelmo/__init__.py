"""Language-model embeddings for single-cell analysis (scELMo / GenePT and LangCell) on AnnData."""

from . import datasets, models, pl, pp, tl
from .gene_embeddings import AlignedGeneEmbeddings, GeneEmbeddings

__version__ = "0.1.0"

__all__ = ["AlignedGeneEmbeddings", "GeneEmbeddings", "__version__", "datasets", "models", "pl", "pp", "tl"]
