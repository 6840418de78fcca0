"""Tools: cell embeddings and what is computed from them."""

from ._elmo_embed import elmo_embed

__all__ = ["elmo_embed"]
