"""Tools: cell embeddings and what is computed from them."""

from ._elmo_embed import elmo_embed
from ._in_silico_knockout import in_silico_knockout
from ._langcell_encode import langcell_encode

__all__ = ["elmo_embed", "in_silico_knockout", "langcell_encode"]
