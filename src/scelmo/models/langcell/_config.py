"""Geometry and constants of LangCell (Zhao et al., ICML 2024)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: ``<cls>`` of the cell encoder: LangCell appends it after Geneformer V1's 25,426 tokens.
CELL_CLS_TOKEN_ID = 25426
#: Longest cell input, ``<cls>`` included.
CELL_MAX_LENGTH = 2048
#: ``<pad>`` of the Geneformer V1 vocabulary.
CELL_PAD_TOKEN_ID = 0
#: Longest text input (PubMedBERT).
TEXT_MAX_LENGTH = 512
#: Width of the shared cell/text embedding space.
EMBED_DIM = 256
#: Temperature of the cell-text similarity logits.
TEMPERATURE = 0.05
#: Weight of the similarity probabilities in zero-shot scoring (LangCell's published setting).
ZEROSHOT_ALPHA = 0.1
#: Largest number of (cell, class) pairs sent through the text encoder at once in zero-shot scoring.
MAX_PAIRS = 512

#: Folder and file names of the original checkpoint layout.
CELL_BERT_DIR = "cell_bert"
TEXT_BERT_DIR = "text_bert"
TEXT_TOKENIZER_DIR = "text_tokenizer"
HEADS = ("cell_proj", "text_proj", "ctm_head")
#: Written by :meth:`LangCell.save` next to the five parts; optional when loading.
LANGCELL_CONFIG = "langcell_config.json"


@dataclass(frozen=True)
class TextBertConfig:
    """Geometry of LangCell's BLIP-style text BERT (``text_bert/config.json``).

    Read from a Hugging Face ``BertConfig`` JSON; keys this module does not use
    (``type_vocab_size``, ``architectures``, ...) are ignored.

    Attributes
    ----------
    vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size
        The usual BERT sizes (PubMedBERT-base: 30522, 768, 12, 12, 3072).
    hidden_act
        Activation of the feed-forward layer (a name of ``transformers.activations.ACT2FN``).
    max_position_embeddings
        Longest text.
    layer_norm_eps
        Epsilon of every LayerNorm.
    encoder_width
        Width of the cell hidden states the cross-attention reads (the cell encoder's hidden size).
    add_cross_attention
        Whether the layers have cross-attention (needed for cell-text matching).
    pad_token_id
        Padding token of the text vocabulary.
    hidden_dropout_prob, attention_probs_dropout_prob
        Dropout in training mode.

    Examples
    --------
    >>> from scelmo.models.langcell import TextBertConfig
    >>> TextBertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
    ...                intermediate_size=96, encoder_width=32).head_dim
    12
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    encoder_width: int = 512
    add_cross_attention: bool = True
    pad_token_id: int = 0
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})."
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TextBertConfig:
        """Build from a (Hugging Face style) config dict, ignoring keys that are not fields."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> TextBertConfig:
        """Read ``config.json``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that a Hugging Face ``BertConfig`` also reads."""
        return {"model_type": "bert", "architectures": ["BertModel"], **dataclasses.asdict(self)}
