"""LangCell's network: cell encoder, text encoder, their projections and the cell-text matching head.

:class:`LangCellNetwork` is the torch module and everything computed with it (cell and text
embeddings, cell-text matching). Reading and writing checkpoints is in
:mod:`scelmo.models.langcell._io`, few-shot training in :mod:`scelmo.models.langcell._training`;
:class:`scelmo.models.LangCell` puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from scelmo._logging import logger
from scelmo._optional import import_optional
from scelmo.models._checkpoint_folder import CheckpointError

from ._checkpoint import load_text_tokenizer
from ._config import (
    CELL_CLS_TOKEN_ID,
    CELL_PAD_TOKEN_ID,
    EMBED_DIM,
    TEXT_MAX_LENGTH,
    TextBertConfig,
)
from ._text_bert import CrossAttentionCache, TextBert

if TYPE_CHECKING:
    import os
    from typing import Self

    import numpy as np
    from torch import Tensor
    from torch import device as Device
    from transformers import BertConfig, BertModel, PreTrainedTokenizerBase

    #: A text tokenizer, or where to read one (a folder or a ``vocab.txt`` file).
    TokenizerSource = str | os.PathLike[str] | PreTrainedTokenizerBase | None

    # The type checker sees the real modules; at run time a missing one names the extra to install.
    import torch
    import transformers
    from torch import nn
    from torch.nn import functional as F
else:
    torch = import_optional("torch", "langcell", purpose="LangCell")
    transformers = import_optional("transformers", "langcell", purpose="LangCell")
    nn = torch.nn
    F = torch.nn.functional

#: Texts: strings, or the output of :meth:`LangCellNetwork.tokenize_texts` (arrays or tensors).
Texts = Sequence[str] | Mapping[str, "Tensor | np.ndarray"]


def build_cell_bert(values: Mapping[str, Any] | BertConfig, attn_implementation: str | None) -> BertModel:
    """A Hugging Face ``BertModel`` without pooler, with the requested attention where supported.

    Examples
    --------
    >>> from scelmo.models.langcell._network import build_cell_bert
    >>> bert = build_cell_bert(dict(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                             intermediate_size=16), "sdpa")
    >>> bert.config.hidden_size, bert.pooler is None
    (8, True)
    """
    if isinstance(values, transformers.BertConfig):
        values = values.to_dict()
    values = {key: value for key, value in dict(values).items() if not key.startswith("_attn_implementation")}
    if attn_implementation:
        try:
            config = transformers.BertConfig.from_dict(values, attn_implementation=attn_implementation)
            return transformers.BertModel(config, add_pooling_layer=False)
        except (ValueError, ImportError) as err:
            # Older transformers releases lack SDPA for BERT: same results, slower.
            logger.warning(
                "cell encoder: attention %r unavailable (%s); using 'eager'", attn_implementation, err
            )
    config = transformers.BertConfig.from_dict(values, attn_implementation="eager")
    return transformers.BertModel(config, add_pooling_layer=False)


def _init_bert_like(module: nn.Module, std: float = 0.02) -> None:
    """BERT's initialisation (normal(0, 0.02) weights, zero biases, unit LayerNorms) for random models."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Embedding):
            nn.init.normal_(sub.weight, std=std)
        if isinstance(sub, nn.Linear) and sub.bias is not None:
            nn.init.zeros_(sub.bias)
        if isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class LangCellNetwork(nn.Module):
    """LangCell's network (Zhao et al., ICML 2024): a cell encoder and a text encoder in one 256-d space.

    - cell embedding: ``normalize(cell_proj(cell_bert(ids, mask).last_hidden_state[:, 0]))``;
    - text embedding: ``normalize(text_proj(text_bert(tokens).last_hidden_state[:, 0]))``;
    - cell-text matching (CTM): ``ctm_head`` on the ``[CLS]`` state of ``text_bert`` run on the
      text with cross-attention to the cell's last hidden states; index 1 means "match".

    Users work with its subclass :class:`scelmo.models.LangCell`, which adds loading
    (:meth:`~scelmo.models.LangCell.from_pretrained`), saving and training; encode an AnnData
    with :func:`scelmo.tl.langcell_encode`.

    Parameters
    ----------
    cell_bert
        The cell encoder, a ``transformers.BertModel`` over Geneformer V1 tokens plus ``<cls>``.
    text_bert
        The BLIP-style text encoder (:class:`~scelmo.models.langcell.TextBert`).
    cell_proj, text_proj
        ``Linear(cell hidden, 256)`` and ``Linear(text hidden, 256)``.
    ctm_head
        ``Linear(text hidden, 2)``.
    text_tokenizer
        A BERT WordPiece tokenizer (PubMedBERT's, uncased), a folder or a ``vocab.txt`` file;
        needed only for the text methods.
    cls_token_id
        Token id of the cell ``<cls>`` (25426 for Geneformer V1's vocabulary).
    text_max_length
        Texts are truncated to this many tokens.

    Examples
    --------
    >>> from scelmo.models import LangCell
    >>> model = LangCell.from_pretrained("path/to/langcell", text_tokenizer="path/to/pubmedbert")  # doctest: +SKIP
    >>> text_emb = model.encode_texts(["cell type: T cell. A lymphocyte ...", "cell type: B cell. ..."])  # doctest: +SKIP
    >>> text_emb.shape  # doctest: +SKIP
    torch.Size([2, 256])
    """

    def __init__(
        self,
        cell_bert: BertModel,
        text_bert: TextBert,
        cell_proj: nn.Linear,
        text_proj: nn.Linear,
        ctm_head: nn.Linear,
        *,
        text_tokenizer: TokenizerSource = None,
        cls_token_id: int = CELL_CLS_TOKEN_ID,
        text_max_length: int = TEXT_MAX_LENGTH,
    ) -> None:
        super().__init__()
        cell_hidden = cell_bert.config.hidden_size
        text_hidden = text_bert.config.hidden_size
        checks = [
            (text_bert.config.encoder_width == cell_hidden, f"text_bert's encoder_width ({text_bert.config.encoder_width}) must equal the cell hidden size ({cell_hidden})"),
            (cell_proj.in_features == cell_hidden, f"cell_proj takes {cell_proj.in_features} inputs, the cell hidden size is {cell_hidden}"),
            (text_proj.in_features == text_hidden, f"text_proj takes {text_proj.in_features} inputs, the text hidden size is {text_hidden}"),
            (cell_proj.out_features == text_proj.out_features, f"cell_proj ({cell_proj.out_features}) and text_proj ({text_proj.out_features}) must project to the same width"),
            (ctm_head.in_features == text_hidden and ctm_head.out_features == 2, f"ctm_head must be Linear({text_hidden}, 2), got Linear({ctm_head.in_features}, {ctm_head.out_features})"),
            (0 <= cls_token_id < cell_bert.config.vocab_size, f"the cell <cls> token {cls_token_id} is outside cell_bert's vocabulary of {cell_bert.config.vocab_size} tokens (LangCell needs at least {CELL_CLS_TOKEN_ID + 1})"),
        ]  # fmt: skip
        wrong = [message for ok, message in checks if not ok]
        if wrong:
            raise CheckpointError("Inconsistent LangCell parts: " + "; ".join(wrong) + ".")
        self.cell_bert = cell_bert
        self.text_bert = text_bert
        self.cell_proj = cell_proj
        self.text_proj = text_proj
        self.ctm_head = ctm_head
        self.cls_token_id = int(cls_token_id)
        self.text_max_length = int(text_max_length)
        self.text_tokenizer: PreTrainedTokenizerBase | None = None
        self.set_text_tokenizer(text_tokenizer)
        #: Classes and their texts after :meth:`train_few_shot` (used by :meth:`predict`).
        self.classes_: list[str] | None = None
        self.class_texts_: list[str] | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cell_config: Mapping[str, Any] | BertConfig,
        text_config: Mapping[str, Any] | TextBertConfig,
        *,
        embed_dim: int = EMBED_DIM,
        text_tokenizer: TokenizerSource = None,
        cls_token_id: int = CELL_CLS_TOKEN_ID,
        attn_implementation: str | None = "sdpa",
    ) -> Self:
        """A LangCell with random weights (BERT initialisation), e.g. for tests and benchmarks.

        Parameters
        ----------
        cell_config
            Hugging Face ``BertConfig`` (or its dict) of the cell encoder.
        text_config
            :class:`~scelmo.models.langcell.TextBertConfig` (or its dict); ``encoder_width``
            is set to the cell hidden size when absent.
        embed_dim
            Width of the joint embedding.
        text_tokenizer, cls_token_id
            As in :class:`LangCell`.
        attn_implementation
            Attention of the cell encoder (``"sdpa"``, ``"eager"``, ...).

        Examples
        --------
        >>> from scelmo.models import LangCell
        >>> model = LangCell.from_config(
        ...     dict(vocab_size=25427, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ...          intermediate_size=64, hidden_act="relu", max_position_embeddings=2048),
        ...     dict(vocab_size=120, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
        ...          intermediate_size=96),
        ... )
        >>> model.embed_dim, model.cell_hidden_size
        (256, 32)
        """
        cell_bert = build_cell_bert(cell_config, attn_implementation)
        cell_cfg = cell_bert.config
        if isinstance(text_config, TextBertConfig):
            text_cfg = text_config
        else:
            values = {"encoder_width": cell_cfg.hidden_size, **dict(text_config)}
            text_cfg = TextBertConfig.from_dict(values)
        text_bert = TextBert(text_cfg)
        _init_bert_like(text_bert)
        heads = [
            nn.Linear(cell_cfg.hidden_size, embed_dim),
            nn.Linear(text_cfg.hidden_size, embed_dim),
            nn.Linear(text_cfg.hidden_size, 2),
        ]
        for head in heads:
            _init_bert_like(head)
        model = cls(
            cell_bert,
            text_bert,
            *heads,
            text_tokenizer=text_tokenizer,
            cls_token_id=cls_token_id,
        )
        return model.eval()

    # --- properties -----------------------------------------------------------------------

    @property
    def checkpoint_hash(self) -> str:
        """SHA-256 of the weights (every tensor's name, dtype, shape and bytes) and the ``<cls>`` id.

        It identifies the weights, whatever the files they came from (``.bin`` or
        ``.safetensors``) and wherever they are; it changes when the model is trained. The
        text tokenizer is not included. Computed on each access (about a second for the
        released model).

        Examples
        --------
        >>> model.checkpoint_hash[:12]  # doctest: +SKIP
        '3f5a0c9d1e2b'
        """
        import hashlib

        digest = hashlib.sha256(f"cls_token_id={self.cls_token_id}".encode())
        for name, tensor in sorted(self.state_dict().items()):
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
            # A byte view works for every dtype (numpy has no bfloat16).
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    @property
    def device(self) -> Device:
        """Device of the weights."""
        # The embedding table, not a Linear: a dynamically quantized Linear has no ``.weight`` tensor.
        return self.cell_bert.embeddings.word_embeddings.weight.device

    @property
    def embed_dim(self) -> int:
        """Width of the joint cell/text embedding (256)."""
        return int(self.cell_proj.out_features)

    @property
    def cell_hidden_size(self) -> int:
        """Hidden width of the cell encoder (512 for the released model)."""
        return int(self.cell_bert.config.hidden_size)

    @property
    def cell_pad_token_id(self) -> int:
        """Padding token of the cell encoder (0)."""
        pad = self.cell_bert.config.pad_token_id
        return CELL_PAD_TOKEN_ID if pad is None else int(pad)

    @property
    def cell_max_length(self) -> int:
        """Longest cell input, ``<cls>`` included (2048)."""
        return int(self.cell_bert.config.max_position_embeddings)

    def set_text_tokenizer(self, text_tokenizer: TokenizerSource) -> None:
        """Attach the text tokenizer (a folder, a ``vocab.txt`` file or a tokenizer object).

        Examples
        --------
        >>> model.set_text_tokenizer("path/to/pubmedbert")  # doctest: +SKIP
        """
        tokenizer = load_text_tokenizer(text_tokenizer)
        if tokenizer is not None and len(tokenizer) > self.text_bert.config.vocab_size:
            raise ValueError(
                f"The text tokenizer has {len(tokenizer)} tokens but text_bert's vocabulary has "
                f"{self.text_bert.config.vocab_size}: it is not the tokenizer this model was trained with "
                "(LangCell uses PubMedBERT's uncased vocabulary)."
            )
        self.text_tokenizer = tokenizer

    # --- cells ----------------------------------------------------------------------------

    def encode_cells(
        self, input_ids: Tensor | np.ndarray, attention_mask: Tensor | np.ndarray | None = None
    ) -> tuple[Tensor, Tensor]:
        """Cell embeddings and the cell encoder's last hidden states.

        Parameters
        ----------
        input_ids
            ``(n_cells, length)`` token ids, ``<cls>`` first (see
            :meth:`scelmo.cell_tokens.CellTokens.pad`), right-padded with 0.
        attention_mask
            ``(n_cells, length)``, 1 for tokens and 0 for padding; default ``input_ids != 0``.

        Returns
        -------
        ``(embeddings, last_hidden)``: L2-normalised ``(n_cells, 256)`` and
        ``(n_cells, length, hidden)``.

        Examples
        --------
        >>> ids, mask = tokens.pad(range(8), prefix=model.cls_token_id)  # doctest: +SKIP
        >>> with torch.inference_mode():  # doctest: +SKIP
        ...     emb, hidden = model.encode_cells(torch.from_numpy(ids), torch.from_numpy(mask))
        """
        input_ids = torch.as_tensor(input_ids, device=self.device)
        if attention_mask is None:
            attention_mask = input_ids != self.cell_pad_token_id
        attention_mask = torch.as_tensor(attention_mask, device=self.device).long()
        hidden = self.cell_bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.project_cells(hidden[:, 0]), hidden

    def project_cells(self, cls_state: Tensor) -> Tensor:
        """``normalize(cell_proj(cls_state))``: the 256-d cell embedding from the ``<cls>`` state.

        Examples
        --------
        >>> emb, hidden = model.encode_cells(ids, mask)  # doctest: +SKIP
        >>> torch.equal(model.project_cells(hidden[:, 0]), emb)  # doctest: +SKIP
        True
        """
        return F.normalize(self.cell_proj(cls_state), dim=-1)

    # --- texts ----------------------------------------------------------------------------

    def tokenize_texts(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Tokenize texts once (padded to the longest, truncated to ``text_max_length``).

        Returns
        -------
        ``{"input_ids": ..., "attention_mask": ...}`` as int64 tensors on the model's device,
        usable by :meth:`encode_texts` and :meth:`ctm_logits` for many cell batches.

        Examples
        --------
        >>> texts = model.tokenize_texts(["cell type: T cell.", "cell type: B cell."])  # doctest: +SKIP
        """
        if self.text_tokenizer is None:
            raise ValueError(
                "This LangCell has no text tokenizer. Pass text_tokenizer= (a folder or vocab.txt of "
                "PubMedBERT uncased) to LangCell.from_pretrained, or call model.set_text_tokenizer(path)."
            )
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings; wrap a single text in a list.")
        encoded = self.text_tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.text_max_length, return_tensors="pt"
        )
        return {key: encoded[key].to(self.device) for key in ("input_ids", "attention_mask")}

    def _text_inputs(self, texts: Texts) -> dict[str, Tensor]:
        if isinstance(texts, Mapping):
            ids = torch.as_tensor(texts["input_ids"], device=self.device)
            mask = texts.get("attention_mask")
            mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask, device=self.device)
            return {"input_ids": ids, "attention_mask": mask}
        return self.tokenize_texts(texts)

    def encode_texts(self, texts: Texts, *, batch_size: int = 64) -> Tensor:
        """L2-normalised 256-d text embeddings.

        Parameters
        ----------
        texts
            Strings, or the output of :meth:`tokenize_texts`.
        batch_size
            Texts per forward pass.

        Returns
        -------
        ``(n_texts, 256)`` tensor.

        Examples
        --------
        >>> with torch.inference_mode():  # doctest: +SKIP
        ...     text_emb = model.encode_texts(["cell type: T cell.", "cell type: B cell."])
        """
        inputs = self._text_inputs(texts)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        out = []
        for start in range(0, ids.shape[0], batch_size):
            cls = self.text_bert(
                ids[start : start + batch_size], mask[start : start + batch_size], cls_only=True
            )
            out.append(F.normalize(self.text_proj(cls), dim=-1))
        if not out:
            return torch.zeros(0, self.embed_dim, device=self.device)
        return torch.cat(out)

    # --- cell-text matching ---------------------------------------------------------------

    def cross_attention_cache(
        self, cell_hidden: Tensor, cell_mask: Tensor | np.ndarray | None = None
    ) -> CrossAttentionCache:
        """Cross-attention keys/values of a cell batch, computed once for any number of texts.

        Parameters
        ----------
        cell_hidden
            ``last_hidden`` of :meth:`encode_cells`, ``(n_cells, length, cell hidden)``.
        cell_mask
            The cells' attention mask ``(n_cells, length)``.

        Returns
        -------
        The cache, for :meth:`ctm_logits`.

        Examples
        --------
        >>> emb, hidden = model.encode_cells(ids, mask)  # doctest: +SKIP
        >>> cache = model.cross_attention_cache(hidden, mask)  # doctest: +SKIP
        >>> logits = model.ctm_logits(class_texts, cache=cache)  # doctest: +SKIP
        """
        if cell_mask is not None:
            cell_mask = torch.as_tensor(cell_mask, device=cell_hidden.device)
        return self.text_bert.cross_attention_cache(cell_hidden, cell_mask)

    def ctm_logits(
        self,
        texts: Texts,
        cell_hidden: Tensor | None = None,
        cell_mask: Tensor | np.ndarray | None = None,
        *,
        cache: CrossAttentionCache | None = None,
    ) -> Tensor:
        """Cell-text matching logits of every (cell, text) pair.

        ``ctm_head(text_bert(text, cross-attending to the cell).last_hidden_state[:, 0])``;
        ``softmax(logits, -1)[..., 1]`` is the match probability (:meth:`ctm_match_probs`).
        The cells' keys and values are computed once and shared by all texts.

        Parameters
        ----------
        texts
            K strings, or :meth:`tokenize_texts` output of shape ``(K, length)`` (each text
            against every cell), or of shape ``(n_cells, K, length)`` (texts per cell).
        cell_hidden, cell_mask
            Cell encoder's last hidden states and mask (see :meth:`encode_cells`).
        cache
            Instead of ``cell_hidden``/``cell_mask``: :meth:`cross_attention_cache` output.

        Returns
        -------
        ``(n_cells, K, 2)`` logits.

        Examples
        --------
        >>> texts = model.tokenize_texts(class_texts)  # doctest: +SKIP
        >>> with torch.inference_mode():  # doctest: +SKIP
        ...     emb, hidden = model.encode_cells(ids, mask)
        ...     probs = model.ctm_match_probs(texts, hidden, mask)  # (n_cells, K)
        """
        if (cache is None) == (cell_hidden is None):
            raise ValueError(
                "Pass the cells either as cell_hidden (and cell_mask) or as cache, exactly one of them."
            )
        if cell_hidden is not None:  # then cache is None (exactly one of them, checked above)
            cache = self.cross_attention_cache(cell_hidden, cell_mask)
        inputs = self._text_inputs(texts)
        cls = self.text_bert(inputs["input_ids"], inputs["attention_mask"], cross=cache, cls_only=True)
        return self.ctm_head(cls)

    def ctm_match_probs(
        self,
        texts: Texts,
        cell_hidden: Tensor | None = None,
        cell_mask: Tensor | np.ndarray | None = None,
        *,
        cache: CrossAttentionCache | None = None,
    ) -> Tensor:
        """Match probability ``softmax(ctm_logits)[..., 1]`` of every (cell, text) pair, ``(n_cells, K)``.

        Examples
        --------
        >>> probs = model.ctm_match_probs(class_texts, cache=cache)  # doctest: +SKIP
        """
        return self.ctm_logits(texts, cell_hidden, cell_mask, cache=cache).softmax(-1)[..., 1]
