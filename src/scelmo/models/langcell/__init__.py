"""LangCell (Zhao et al., ICML 2024): cell and text encoders in one space, loaded from the original checkpoint.

Needs the ``langcell`` extra (torch, transformers, safetensors).
"""

from ._ce import LangCellCE
from ._checkpoint import CheckpointError
from ._config import (
    CELL_CLS_TOKEN_ID,
    CELL_MAX_LENGTH,
    EMBED_DIM,
    TEMPERATURE,
    TEXT_MAX_LENGTH,
    TextBertConfig,
)
from ._encode import cell_batches, check_token_ids, cls_hidden_state, encode_cell_tokens
from ._model import LangCell
from ._text_bert import CrossAttentionCache, TextBert
from ._training import TrainingHistory

__all__ = [
    "CELL_CLS_TOKEN_ID",
    "CELL_MAX_LENGTH",
    "EMBED_DIM",
    "TEMPERATURE",
    "TEXT_MAX_LENGTH",
    "CheckpointError",
    "CrossAttentionCache",
    "LangCell",
    "LangCellCE",
    "TextBert",
    "TextBertConfig",
    "TrainingHistory",
    "cell_batches",
    "check_token_ids",
    "cls_hidden_state",
    "encode_cell_tokens",
]
