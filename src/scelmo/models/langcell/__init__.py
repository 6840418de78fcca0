"""LangCell (Zhao et al., ICML 2024): cell and text encoders in one space, loaded from the original checkpoint.

Needs the ``langcell`` extra (torch, transformers, safetensors). The names below are imported on
first access, so that the constants (:mod:`scelmo.models.langcell._config`) can be read without
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> submodule that defines it (imported on first access).
_LAZY = {
    "CELL_CLS_TOKEN_ID": "._config",
    "CELL_MAX_LENGTH": "._config",
    "EMBED_DIM": "._config",
    "TEMPERATURE": "._config",
    "TEXT_MAX_LENGTH": "._config",
    "TextBertConfig": "._config",
    "CheckpointError": ".._checkpoint_folder",
    "CrossAttentionCache": "._text_bert",
    "TextBert": "._text_bert",
    "LangCell": "._model",
    "LangCellCE": "._ce",
    "LangCellZeroShot": "._zeroshot",
    "TrainingHistory": "._training",
    "cell_batches": "._encode",
    "check_token_ids": "._encode",
    "class_groups": "._zeroshot",
    "cls_hidden_state": "._encode",
    "encode_cell_tokens": "._encode",
    "encode_token_block": "._encode",
    "lazy_encode_cell_tokens": "._encode",
    "langcell_zeroshot": "._zeroshot",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
