"""LangCell's text encoder: a BLIP-style BERT (``med.py`` layout) with optional cross-attention to cells.

Differences from a stock Hugging Face ``BertModel``, all required by the checkpoint:

- embeddings are word + position only (no token-type embeddings);
- each layer is self-attention, then (in multimodal mode) cross-attention whose key and value
  are ``Linear(encoder_width, hidden)`` over the cell encoder's hidden states, then the
  feed-forward block;
- masks are additive, ``(1 - mask) * -10000``.

Parameter names follow BLIP's ``med.py`` so that ``text_bert/`` state dicts load as they are:
``embeddings.{word_embeddings,position_embeddings,LayerNorm}``,
``encoder.layer.{i}.attention.self.{query,key,value}``, ``attention.output.{dense,LayerNorm}``,
``crossattention.self.{query,key,value}``, ``crossattention.output.{dense,LayerNorm}``,
``intermediate.dense``, ``output.{dense,LayerNorm}``.

Cell-text matching over K texts and B cells runs the K texts against every cell in one pass:
the cross-attention keys/values of a cell batch are computed once
(:meth:`TextBert.cross_attention_cache`) and the queries of the K texts of a cell are laid
side by side, so nothing of size ``B x K x cell_length`` is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from scelmo._optional import import_optional

from ._config import TextBertConfig

if TYPE_CHECKING:
    # The type checker sees the real modules; at run time a missing one names the extra to install.
    import torch
    from torch import nn
    from torch.nn import functional as F
    from transformers import activations
else:
    torch = import_optional("torch", "langcell", purpose="LangCell")
    activations = import_optional("transformers.activations", "langcell", purpose="LangCell")
    nn = torch.nn
    F = torch.nn.functional

#: Added to the attention scores of masked positions (BLIP / original BERT convention).
MASK_VALUE = -10000.0


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(batch, length)`` 1/0 mask -> ``(batch, 1, 1, length)`` additive mask ``(1 - mask) * -10000``."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * MASK_VALUE


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(batch, length, hidden)`` -> ``(batch, heads, length, head_dim)``."""
    batch, length, hidden = x.shape
    return x.view(batch, length, n_heads, hidden // n_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(batch, heads, length, head_dim)`` -> ``(batch, length, hidden)``."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


@dataclass
class CrossAttentionCache:
    """Cross-attention keys and values of a batch of cells, for every text layer.

    Build it with :meth:`TextBert.cross_attention_cache` (or
    :meth:`scelmo.models.LangCell.cross_attention_cache`) once per cell batch and reuse it for
    any number of texts.

    Attributes
    ----------
    keys, values
        One ``(n_cells, heads, cell_length, head_dim)`` tensor per layer.
    mask
        Additive mask ``(n_cells, 1, 1, cell_length)`` over the cell positions.

    Examples
    --------
    >>> emb, hidden = model.encode_cells(ids, mask)  # doctest: +SKIP
    >>> cache = model.cross_attention_cache(hidden, mask)  # doctest: +SKIP
    >>> cache.n_cells, len(cache.keys)  # doctest: +SKIP
    (32, 12)
    """

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return int(self.mask.shape[0])


class _SelfAttention(nn.Module):
    def __init__(self, config: TextBertConfig, kv_width: int) -> None:
        super().__init__()
        self.n_heads = config.num_attention_heads
        self.dropout = config.attention_probs_dropout_prob
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(kv_width, config.hidden_size)
        self.value = nn.Linear(kv_width, config.hidden_size)

    def attend(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        dropout = self.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, dropout_p=dropout)


class _Output(nn.Module):
    def __init__(self, config: TextBertConfig, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class _Attention(nn.Module):
    def __init__(self, config: TextBertConfig, kv_width: int) -> None:
        super().__init__()
        self.self = _SelfAttention(config, kv_width)
        self.output = _Output(config, config.hidden_size)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, cls_only: bool = False) -> torch.Tensor:
        # cls_only: every position gives keys and values, only [CLS] asks (exact for row 0).
        attn, n = self.self, self.self.n_heads
        queries = hidden[:, :1] if cls_only else hidden
        context = attn.attend(
            _heads(attn.query(queries), n), _heads(attn.key(hidden), n), _heads(attn.value(hidden), n), mask
        )
        return self.output(_merge(context), queries)

    def cross(
        self, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        # hidden is (n_cells * K, T, H): the K texts of a cell become one query sequence of
        # length K * T against that cell's keys (queries attend independently, so this equals
        # K separate passes without copying the keys and values K times).
        n_cells = keys.shape[0]
        rows, length, width = hidden.shape
        per_cell = hidden.reshape(n_cells, (rows // n_cells) * length, width)
        attn = self.self
        context = attn.attend(_heads(attn.query(per_cell), attn.n_heads), keys, values, mask)
        return self.output(_merge(context).reshape(rows, length, width), hidden)


class _Intermediate(nn.Module):
    def __init__(self, config: TextBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activations.ACT2FN[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(hidden))


class _Layer(nn.Module):
    #: Only in multimodal models (``add_cross_attention``).
    crossattention: _Attention

    def __init__(self, config: TextBertConfig) -> None:
        super().__init__()
        self.attention = _Attention(config, config.hidden_size)
        if config.add_cross_attention:
            self.crossattention = _Attention(config, config.encoder_width)
        self.intermediate = _Intermediate(config)
        self.output = _Output(config, config.intermediate_size)

    def forward(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        cross: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        cls_only: bool = False,
    ) -> torch.Tensor:
        return self.after_self_attention(self.attention(hidden, mask, cls_only), cross)

    def after_self_attention(
        self, hidden: torch.Tensor, cross: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """Cross-attention (in multimodal mode) and the feed-forward block."""
        if cross is not None:
            hidden = self.crossattention.cross(hidden, *cross)
        return self.output(self.intermediate(hidden), hidden)


class _Embeddings(nn.Module):
    def __init__(self, config: TextBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.dropout(
            self.LayerNorm(self.word_embeddings(input_ids) + self.position_embeddings(positions))
        )


class _Encoder(nn.Module):
    def __init__(self, config: TextBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    @property
    def layers(self) -> list[_Layer]:
        """The layers in order (``self.layer`` yields them typed as plain modules)."""
        return cast("list[_Layer]", list(self.layer))


class TextBert(nn.Module):
    """LangCell's BLIP-style text BERT.

    Parameters
    ----------
    config
        Its geometry.

    Examples
    --------
    >>> import torch
    >>> from scelmo.models.langcell import TextBert, TextBertConfig
    >>> config = TextBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...                         intermediate_size=32, encoder_width=8)
    >>> bert = TextBert(config).eval()
    >>> ids = torch.tensor([[2, 7, 9, 3], [2, 5, 3, 0]])
    >>> mask = (ids != 0).long()
    >>> bert(ids, mask).shape  # text mode
    torch.Size([2, 4, 16])
    >>> cells, cell_mask = torch.randn(3, 5, 8), torch.ones(3, 5)
    >>> bert(ids, mask, cross=bert.cross_attention_cache(cells, cell_mask)).shape  # 2 texts x 3 cells
    torch.Size([3, 2, 4, 16])
    """

    def __init__(self, config: TextBertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    @property
    def dtype(self) -> torch.dtype:
        """Floating point type of the weights."""
        return self.embeddings.word_embeddings.weight.dtype

    def cross_attention_cache(
        self, encoder_hidden_states: torch.Tensor, encoder_attention_mask: torch.Tensor | None = None
    ) -> CrossAttentionCache:
        """Cross-attention keys/values of every layer for a batch of cells (computed once, reused for any texts).

        Parameters
        ----------
        encoder_hidden_states
            Cell encoder's last hidden states, ``(n_cells, cell_length, encoder_width)``.
        encoder_attention_mask
            ``(n_cells, cell_length)`` with 1 for real tokens and 0 for padding; default all ones.

        Returns
        -------
        The cache.
        """
        if not self.config.add_cross_attention:
            raise ValueError("This text BERT has no cross-attention layers (add_cross_attention=False).")
        states = encoder_hidden_states.to(self.dtype)
        if encoder_attention_mask is None:
            encoder_attention_mask = torch.ones(states.shape[:2], device=states.device)
        keys, values = [], []
        for layer in self.encoder.layers:
            attn = layer.crossattention.self
            keys.append(_heads(attn.key(states), attn.n_heads))
            values.append(_heads(attn.value(states), attn.n_heads))
        return CrossAttentionCache(keys, values, additive_mask(encoder_attention_mask, self.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross: CrossAttentionCache | None = None,
        cls_only: bool = False,
    ) -> torch.Tensor:
        """Last hidden states, in text mode or (with cells) in multimodal mode.

        Parameters
        ----------
        input_ids
            Text mode: ``(n_texts, length)``. Multimodal mode: ``(K, length)`` for K texts
            each matched against every cell, or ``(n_cells, K, length)`` for texts specific to
            each cell (``K = 1`` pairs text ``i`` with cell ``i``).
        attention_mask
            1/0 mask of the same shape as ``input_ids``; default all ones.
        encoder_hidden_states, encoder_attention_mask
            Cell hidden states and mask: multimodal mode (see :meth:`cross_attention_cache`).
        cross
            A precomputed cache instead of ``encoder_hidden_states``.
        cls_only
            Return the ``[CLS]`` state only (what the projections and the CTM head read); the
            last layer is then computed for ``[CLS]`` alone, which is exact and saves most of
            that layer.

        Returns
        -------
        Text mode: ``(n_texts, length, hidden)``. Multimodal: ``(n_cells, K, length, hidden)``.
        With ``cls_only``, the ``length`` axis is dropped.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        # The shortcuts (last layer for [CLS] only, first self-attention shared by all cells) are
        # exact but change the shapes dropout draws from: in training every layer runs in full,
        # so a seeded training run draws the same masks as the original.
        short = cls_only and not self.training
        if encoder_hidden_states is not None:
            if cross is not None:
                raise ValueError("Pass either encoder_hidden_states or cross, not both.")
            cross = self.cross_attention_cache(encoder_hidden_states, encoder_attention_mask)
        if cross is None:
            if input_ids.dim() != 2:
                raise ValueError(
                    f"Text mode takes input_ids of shape (n_texts, length), got {tuple(input_ids.shape)}."
                )
            hidden = self.embeddings(input_ids)
            mask = additive_mask(attention_mask, hidden.dtype)
            layers = self.encoder.layers
            for i, layer in enumerate(layers):
                hidden = layer(hidden, mask, cls_only=short and i == len(layers) - 1)
            return hidden[:, 0] if cls_only else hidden

        n_cells = cross.n_cells
        layers = self.encoder.layers
        shared_first = False
        if input_ids.dim() == 2:
            n_texts, length = input_ids.shape
            hidden = self.embeddings(input_ids)
            # Embeddings and the first self-attention do not depend on the cell: computed once
            # per text, then shared by all cells (the first cross-attention is where they differ).
            # The attention only in evaluation: in training each (cell, text) pair draws its own
            # dropout masks, as in the original.
            shared_first = not self.training
            if shared_first:
                text_mask = additive_mask(attention_mask, self.dtype)
                hidden = layers[0].attention(hidden, text_mask, short and len(layers) == 1)
            hidden = hidden.unsqueeze(0).expand(n_cells, -1, -1, -1)
            mask = attention_mask.unsqueeze(0).expand(n_cells, -1, -1)
        elif input_ids.dim() == 3 and input_ids.shape[0] == n_cells:
            n_texts, length = input_ids.shape[1:]
            hidden = self.embeddings(input_ids.reshape(-1, length)).view(n_cells, n_texts, length, -1)
            mask = attention_mask
        else:
            raise ValueError(
                f"Multimodal mode takes input_ids of shape (K, length) or (n_cells={n_cells}, K, length), "
                f"got {tuple(input_ids.shape)}."
            )
        hidden = hidden.reshape(n_cells * n_texts, hidden.shape[-2], -1)
        mask = additive_mask(mask.reshape(n_cells * n_texts, length), hidden.dtype)
        if shared_first:
            hidden = layers[0].after_self_attention(hidden, (cross.keys[0], cross.values[0], cross.mask))
        for i in range(int(shared_first), len(layers)):
            last = short and i == len(layers) - 1
            hidden = layers[i](hidden, mask, (cross.keys[i], cross.values[i], cross.mask), cls_only=last)
        if cls_only:
            return hidden[:, 0].view(n_cells, n_texts, -1)
        return hidden.view(n_cells, n_texts, length, -1)
