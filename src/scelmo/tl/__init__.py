"""Tools: cell embeddings and what is computed from them."""

from ._elmo_embed import elmo_embed
from ._langcell_encode import langcell_encode

__all__ = ["elmo_embed", "langcell_encode"]
