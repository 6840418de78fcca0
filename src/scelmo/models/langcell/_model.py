"""The LangCell model: cell encoder, text encoder, their projections and the cell-text matching head."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..._logging import logger
from ..._optional import import_optional
from ._checkpoint import (
    CheckpointError,
    check_sizes,
    checkpoint_folder,
    load_checked,
    load_text_tokenizer,
    read_json,
    read_state_dict,
    save_safetensors,
    verify_folder,
)
from ._config import (
    CELL_BERT_DIR,
    CELL_CLS_TOKEN_ID,
    CELL_PAD_TOKEN_ID,
    EMBED_DIM,
    HEADS,
    LANGCELL_CONFIG,
    TEXT_BERT_DIR,
    TEXT_MAX_LENGTH,
    TEXT_TOKENIZER_DIR,
    TextBertConfig,
)
from ._text_bert import CrossAttentionCache, TextBert

torch = import_optional("torch", "langcell", purpose="LangCell")
transformers = import_optional("transformers", "langcell", purpose="LangCell")
nn = torch.nn
F = torch.nn.functional

_FORMAT = "scelmo.langcell"
_FORMAT_VERSION = 1

Texts = Sequence[str] | Mapping[str, Any]


def _cell_bert(values: Mapping[str, Any] | Any, attn_implementation: str | None) -> Any:
    """A Hugging Face ``BertModel`` without pooler, with the requested attention where supported."""
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


def _init_bert_like(module: Any, std: float = 0.02) -> None:
    """BERT's initialisation (normal(0, 0.02) weights, zero biases, unit LayerNorms) for random models."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear | nn.Embedding):
            nn.init.normal_(sub.weight, std=std)
        if isinstance(sub, nn.Linear) and sub.bias is not None:
            nn.init.zeros_(sub.bias)
        if isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class LangCell(nn.Module):
    """LangCell (Zhao et al., ICML 2024): a cell encoder and a text encoder in one 256-d space.

    - cell embedding: ``normalize(cell_proj(cell_bert(ids, mask).last_hidden_state[:, 0]))``;
    - text embedding: ``normalize(text_proj(text_bert(tokens).last_hidden_state[:, 0]))``;
    - cell-text matching (CTM): ``ctm_head`` on the ``[CLS]`` state of ``text_bert`` run on the
      text with cross-attention to the cell's last hidden states; index 1 means "match".

    Load a checkpoint with :meth:`from_pretrained`; encode an AnnData with
    :func:`scelmo.tl.langcell_encode`.

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
        cell_bert: Any,
        text_bert: TextBert,
        cell_proj: Any,
        text_proj: Any,
        ctm_head: Any,
        *,
        text_tokenizer: Any = None,
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
        self.text_tokenizer = None
        self.set_text_tokenizer(text_tokenizer)
        #: Classes and their texts after :meth:`train_few_shot` (used by :meth:`predict`).
        self.classes_: list[str] | None = None
        self.class_texts_: list[str] | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        cell_config: Mapping[str, Any] | Any,
        text_config: Mapping[str, Any] | TextBertConfig,
        *,
        embed_dim: int = EMBED_DIM,
        text_tokenizer: Any = None,
        cls_token_id: int = CELL_CLS_TOKEN_ID,
        attn_implementation: str | None = "sdpa",
    ) -> LangCell:
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
        cell_bert = _cell_bert(cell_config, attn_implementation)
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

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        text_tokenizer: Any = None,
        attn_implementation: str | None = "sdpa",
        device: str | Any | None = None,
    ) -> LangCell:
        """Load a LangCell checkpoint folder (the original five-part layout or one written by :meth:`save`).

        Every tensor is checked against the model built from the configuration files: a wrong
        shape, a missing or an unexpected tensor raises an error naming it (unused pooler
        weights and position-id buffers are skipped). ``.bin`` files are read with
        ``torch.load(weights_only=True)``; ``.safetensors`` files are preferred when both exist.

        Parameters
        ----------
        path
            Folder with ``cell_bert/``, ``text_bert/``, ``cell_proj``, ``text_proj`` and
            ``ctm_head`` (``.bin`` or ``.safetensors``).
        text_tokenizer
            The text tokenizer: a folder (with ``vocab.txt`` or ``tokenizer.json``), a
            ``vocab.txt`` file, or a tokenizer object. Default: ``path/text_tokenizer/``, else
            ``path/text_bert/`` if it holds a vocabulary, else none (cell methods still work).
            LangCell uses PubMedBERT's uncased vocabulary
            (``microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext``).
        attn_implementation
            Attention of the cell encoder; ``"sdpa"`` (fused) by default, ``"eager"`` as the original.
        device
            Move the model there (default: stay on the CPU).

        Returns
        -------
        The model, in evaluation mode.

        Raises
        ------
        FileNotFoundError
            If a part is missing.
        scelmo.models.langcell.CheckpointError
            If a tensor is missing, unexpected or of the wrong shape.

        Examples
        --------
        >>> from scelmo.models import LangCell
        >>> model = LangCell.from_pretrained("path/to/langcell")  # doctest: +SKIP
        """
        root = Path(path)
        if not root.is_dir():
            raise FileNotFoundError(f"LangCell checkpoint folder not found: {root}")
        verify_folder(root, marker=LANGCELL_CONFIG, writer=_FORMAT)
        extra: dict[str, Any] = {}
        if (root / LANGCELL_CONFIG).is_file():
            extra = read_json(root / LANGCELL_CONFIG, "scelmo's LangCell settings")
            if extra.get("format") != _FORMAT or int(extra.get("version", 0)) > _FORMAT_VERSION:
                raise CheckpointError(
                    f"{root / LANGCELL_CONFIG} is not a LangCell config this scelmo can read (format "
                    f"{extra.get('format')!r}, version {extra.get('version')!r}); upgrade scelmo."
                )
        for part in (CELL_BERT_DIR, TEXT_BERT_DIR):
            if not (root / part / "config.json").is_file():
                raise FileNotFoundError(
                    f"{root / part / 'config.json'} is missing: {root} is not a LangCell checkpoint."
                )

        cell_path, text_path = root / CELL_BERT_DIR / "config.json", root / TEXT_BERT_DIR / "config.json"
        cell_values = read_json(cell_path, "cell_bert's configuration")
        text_values = read_json(text_path, "text_bert's configuration")
        # The weights are read first: the sizes the configurations declare are checked against
        # their shapes before anything of those sizes is allocated.
        states = {part: read_state_dict(root / part) for part in (CELL_BERT_DIR, TEXT_BERT_DIR, *HEADS)}
        (cell_state, cell_source), (text_state, text_source) = states[CELL_BERT_DIR], states[TEXT_BERT_DIR]
        check_sizes(cell_values, cell_state, part=CELL_BERT_DIR, config_path=cell_path, source=cell_source)
        # The cross-attention reads the cell hidden states: their width is the default.
        text_values.setdefault("encoder_width", cell_values.get("hidden_size", 768))  # BertConfig's default
        cross = bool(text_values.get("add_cross_attention", True))
        check_sizes(
            text_values,
            text_state,
            part=TEXT_BERT_DIR,
            config_path=text_path,
            source=text_source,
            cross_attention=cross,
        )
        del cell_state, text_state
        try:
            cell_cfg = transformers.BertConfig.from_dict(
                {k: v for k, v in cell_values.items() if not k.startswith("_attn_implementation")}
            )
            text_cfg = TextBertConfig.from_dict(text_values)
        except (TypeError, ValueError) as err:
            raise CheckpointError(
                f"{cell_path} or {text_path} is not a valid BERT configuration: {err}"
            ) from err
        cell_bert = _cell_bert(cell_cfg, attn_implementation)
        text_bert = TextBert(text_cfg)
        for part, module in ((CELL_BERT_DIR, cell_bert), (TEXT_BERT_DIR, text_bert)):
            state, source = states.pop(part)
            load_checked(module, state, part=part, source=source)
            del state
        # The projection width is read from the checkpoint (256 for the released model).
        proj_state, proj_source = states["cell_proj"]
        if "weight" not in proj_state or getattr(proj_state["weight"], "ndim", 0) != 2:
            raise CheckpointError(
                f"{proj_source} has no 2-d 'weight': it is not a Linear layer's state dict."
            )
        embed_dim = int(proj_state["weight"].shape[0])
        heads = {
            "cell_proj": nn.Linear(cell_cfg.hidden_size, embed_dim),
            "text_proj": nn.Linear(text_cfg.hidden_size, embed_dim),
            "ctm_head": nn.Linear(text_cfg.hidden_size, 2),
        }
        for head, module in heads.items():
            state, source = states[head]
            load_checked(module, state, part=head, source=source)

        if text_tokenizer is None:
            for candidate in (root / TEXT_TOKENIZER_DIR, root / TEXT_BERT_DIR):
                if (candidate / "vocab.txt").is_file() or (candidate / "tokenizer.json").is_file():
                    text_tokenizer = candidate
                    break
        model = cls(
            cell_bert,
            text_bert,
            heads["cell_proj"],
            heads["text_proj"],
            heads["ctm_head"],
            text_tokenizer=text_tokenizer,
            cls_token_id=int(extra.get("cls_token_id", CELL_CLS_TOKEN_ID)),
            text_max_length=int(extra.get("text_max_length", TEXT_MAX_LENGTH)),
        ).eval()
        if extra.get("classes") and extra.get("class_texts"):
            model.classes_ = [str(c) for c in extra["classes"]]
            model.class_texts_ = [str(t) for t in extra["class_texts"]]
        logger.info(
            "loaded LangCell from %s (cell encoder %d layers x %d, text encoder %d layers x %d)",
            root,
            cell_cfg.num_hidden_layers,
            cell_cfg.hidden_size,
            text_cfg.num_hidden_layers,
            text_cfg.hidden_size,
        )
        return model.to(device) if device is not None else model

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the model as safetensors in the five-part layout (plus the text tokenizer), whole or not at all.

        ``path`` then holds ``cell_bert/{config.json,model.safetensors}``,
        ``text_bert/{config.json,model.safetensors}``, ``cell_proj.safetensors``,
        ``text_proj.safetensors``, ``ctm_head.safetensors``, ``text_tokenizer/`` (if the
        model has one), ``langcell_config.json`` and ``scelmo_manifest.json`` (every file's
        size and SHA-256, checked by :meth:`from_pretrained`). Everything is written into a
        temporary sibling folder that is renamed into place at the end: if saving fails, ``path``
        is as it was (an old checkpoint there still loads) and no partial folder remains.

        Parameters
        ----------
        path
            Folder to write (created).
        overwrite
            Replace an existing checkpoint folder as a whole (a non-empty folder that holds no
            LangCell checkpoint is never replaced).

        Examples
        --------
        >>> model.save("my_langcell")  # doctest: +SKIP
        >>> LangCell.from_pretrained("my_langcell")  # doctest: +SKIP
        """
        replaceable = (LANGCELL_CONFIG, CELL_BERT_DIR, TEXT_BERT_DIR, "scelmo_manifest.json")
        with checkpoint_folder(
            path, overwrite=overwrite, writer=_FORMAT, version=_FORMAT_VERSION, replaceable=replaceable
        ) as root:
            self._write_parts(root)
        logger.info("saved LangCell to %s", Path(path))

    def _write_parts(self, root: Path) -> None:
        """Every file of the checkpoint, into the (new, empty) folder ``root``."""
        for part in (CELL_BERT_DIR, TEXT_BERT_DIR):
            (root / part).mkdir(parents=True, exist_ok=True)
        config = self.cell_bert.config.to_dict()
        config.pop("_attn_implementation_autoset", None)
        (root / CELL_BERT_DIR / "config.json").write_text(
            json.dumps(config, indent=2, sort_keys=True), encoding="utf-8"
        )
        save_safetensors(self.cell_bert, root / CELL_BERT_DIR / "model.safetensors")
        text_config = json.dumps(self.text_bert.config.to_dict(), indent=2)
        (root / TEXT_BERT_DIR / "config.json").write_text(text_config, encoding="utf-8")
        save_safetensors(self.text_bert, root / TEXT_BERT_DIR / "model.safetensors")
        for head in HEADS:
            save_safetensors(getattr(self, head), root / f"{head}.safetensors")
        if self.text_tokenizer is not None:
            self.text_tokenizer.save_pretrained(str(root / TEXT_TOKENIZER_DIR))
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "cls_token_id": self.cls_token_id,
            "embed_dim": self.embed_dim,
            "text_max_length": self.text_max_length,
        }
        if self.classes_ is not None and self.class_texts_ is not None:
            meta["classes"] = list(self.classes_)
            meta["class_texts"] = list(self.class_texts_)
        (root / LANGCELL_CONFIG).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> LangCell:
        """Read a model written by :meth:`save` (the same as :meth:`from_pretrained`).

        Examples
        --------
        >>> model.save("my_langcell")  # doctest: +SKIP
        >>> model = LangCell.load("my_langcell")  # doctest: +SKIP
        """
        return cls.from_pretrained(path, **kwargs)

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
    def device(self) -> Any:
        """Device of the weights."""
        return self.cell_proj.weight.device

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

    def set_text_tokenizer(self, text_tokenizer: Any) -> None:
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

    def encode_cells(self, input_ids: Any, attention_mask: Any | None = None) -> tuple[Any, Any]:
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

    def project_cells(self, cls_state: Any) -> Any:
        """``normalize(cell_proj(cls_state))``: the 256-d cell embedding from the ``<cls>`` state.

        Examples
        --------
        >>> emb, hidden = model.encode_cells(ids, mask)  # doctest: +SKIP
        >>> torch.equal(model.project_cells(hidden[:, 0]), emb)  # doctest: +SKIP
        True
        """
        return F.normalize(self.cell_proj(cls_state), dim=-1)

    # --- texts ----------------------------------------------------------------------------

    def tokenize_texts(self, texts: Sequence[str]) -> dict[str, Any]:
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

    def _text_inputs(self, texts: Texts) -> dict[str, Any]:
        if isinstance(texts, Mapping):
            ids = torch.as_tensor(texts["input_ids"], device=self.device)
            mask = texts.get("attention_mask")
            mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask, device=self.device)
            return {"input_ids": ids, "attention_mask": mask}
        return self.tokenize_texts(texts)

    def encode_texts(self, texts: Texts, *, batch_size: int = 64) -> Any:
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

    def cross_attention_cache(self, cell_hidden: Any, cell_mask: Any | None = None) -> CrossAttentionCache:
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
        cell_hidden: Any | None = None,
        cell_mask: Any | None = None,
        *,
        cache: CrossAttentionCache | None = None,
    ) -> Any:
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
        if cache is None:
            cache = self.cross_attention_cache(cell_hidden, cell_mask)
        inputs = self._text_inputs(texts)
        cls = self.text_bert(inputs["input_ids"], inputs["attention_mask"], cross=cache, cls_only=True)
        return self.ctm_head(cls)

    def ctm_match_probs(
        self,
        texts: Texts,
        cell_hidden: Any | None = None,
        cell_mask: Any | None = None,
        *,
        cache: CrossAttentionCache | None = None,
    ) -> Any:
        """Match probability ``softmax(ctm_logits)[..., 1]`` of every (cell, text) pair, ``(n_cells, K)``.

        Examples
        --------
        >>> probs = model.ctm_match_probs(class_texts, cache=cache)  # doctest: +SKIP
        """
        return self.ctm_logits(texts, cell_hidden, cell_mask, cache=cache).softmax(-1)[..., 1]

    # --- few-shot training and prediction ---------------------------------------------------

    def train_few_shot(
        self,
        adata: Any,
        labels_key: str,
        class_texts: Mapping[str, str] | None = None,
        *,
        tokens_key: str = "langcell_tokens",
        epochs: int = 10,
        batch_size: int = 12,
        lr: float = 1e-5,
        text_lr: float | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> Any:
        """Few-shot fine-tuning of both encoders on labelled cells (LangCell's published recipe).

        Each minibatch of cells is scored against the class texts by similarity and by
        cell-text matching; the loss is ``CE(sim / 0.05, y) + CE(p, y)`` (``p``: the K match
        probabilities), optimised with Adam (lr 1e-5 for each encoder) for 10 epochs of
        minibatches of 12; ``ctm_head`` is frozen. The model is trained in place; afterwards
        :meth:`predict` labels new cells with these classes, and :meth:`save` keeps them.

        Parameters
        ----------
        adata
            The labelled cells (a few per class). Their tokens are read from
            ``adata.obsm[tokens_key]`` (computed from raw counts in ``adata.X`` when absent,
            see :func:`scelmo.pp.tokenize`). Cells without a label (``NaN``) are skipped.
        labels_key
            Column of ``adata.obs`` with the labels.
        class_texts
            Label -> class text, e.g. ``"cell type: T cell. A lymphocyte that ..."`` (see
            :func:`scelmo.pp.celltype_descriptions`; LangCell was trained on
            ``"cell type: NAME. DEFINITION"``). Every label must have one; extra classes (with
            no training cells) are allowed and take part in the softmax. Default:
            ``"cell type: LABEL."`` for each label.
        tokens_key
            Key of the tokens in ``adata.obsm``.
        epochs, batch_size, lr, text_lr
            Training length, cells per step, Adam learning rates of the cell and the text side
            (``text_lr`` defaults to ``lr``).
        seed
            Seed of the minibatch order and of dropout.
        progress
            Show a progress bar.

        Returns
        -------
        :class:`~scelmo.models.langcell._training.TrainingHistory`: per-epoch loss and accuracy.

        Examples
        --------
        >>> texts = {"T cell": "cell type: T cell. ...", "B cell": "cell type: B cell. ..."}
        >>> history = model.train_few_shot(train, "cell_type", texts)  # doctest: +SKIP
        >>> test.obs["predicted"] = model.predict(test)  # doctest: +SKIP
        >>> model.save("langcell_fewshot")  # doctest: +SKIP
        """
        import numpy as np

        from ._training import train_few_shot

        if labels_key not in adata.obs.columns:
            raise KeyError(f"adata.obs has no column {labels_key!r}; it has {list(adata.obs.columns)}.")
        values = adata.obs[labels_key]
        labelled = np.asarray(values.notna())
        present = sorted({str(v) for v in values[labelled]})
        if class_texts is None:
            class_texts = {label: f"cell type: {label}." for label in present}
        if not isinstance(class_texts, Mapping):
            raise TypeError("class_texts must be a dict label -> text.")
        missing = [label for label in present if label not in class_texts]
        if missing:
            raise KeyError(f"class_texts has no text for the labels {missing} of adata.obs[{labels_key!r}].")
        classes = [str(c) for c in class_texts]
        texts = [str(class_texts[c]) for c in classes]
        position = {c: i for i, c in enumerate(classes)}
        cells = np.flatnonzero(labelled)
        y = np.array([position[str(v)] for v in values.iloc[cells]], dtype=np.int64)
        tokens = _cell_tokens(adata, tokens_key).subset(cells)
        history = train_few_shot(
            self,
            tokens,
            y,
            texts,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            text_lr=text_lr,
            seed=seed,
            progress=progress,
        )
        self.classes_, self.class_texts_ = classes, texts
        logger.info(
            "few-shot trained LangCell on %d cells of %d classes for %d epochs (final loss %.4g)",
            cells.size,
            len(classes),
            epochs,
            history.loss[-1] if history.loss else float("nan"),
        )
        return history

    def predict(
        self,
        adata: Any,
        class_texts: Mapping[str, str] | None = None,
        *,
        alpha: float = 0.1,
        use_ctm: bool = True,
        tokens_key: str = "langcell_tokens",
        batch_size: int = 32,
        return_probs: bool = False,
        progress: bool = True,
    ) -> Any:
        """Label cells by LangCell's zero-shot score against class texts.

        ``argmax(alpha * sim_probs + (1 - alpha) * ctm_probs)`` (see
        :func:`scelmo.tl.zeroshot_annotate` with ``method="langcell"``, which also writes the
        results into ``adata``).

        Parameters
        ----------
        adata
            The cells (tokens in ``adata.obsm[tokens_key]``, computed when absent).
        class_texts
            Label -> text; default the classes of the last :meth:`train_few_shot`.
        alpha, use_ctm
            Weight of the similarity probabilities; whether to run cell-text matching.
        tokens_key
            Key of the tokens in ``adata.obsm``.
        batch_size
            Cells per pass.
        return_probs
            Also return the ``(n_obs, K)`` probabilities.
        progress
            Show a progress bar.

        Returns
        -------
        Predicted labels (object array), or ``(labels, probs)`` with ``return_probs``.

        Examples
        --------
        >>> labels = model.predict(adata, {"T cell": "cell type: T cell. ...", "B cell": "cell type: B cell. ..."})  # doctest: +SKIP
        """
        import numpy as np

        from ...annotation._langcell_zeroshot import langcell_zeroshot

        if class_texts is None:
            if self.classes_ is None or self.class_texts_ is None:
                raise ValueError(
                    "Pass class_texts (label -> text): this model has no classes of its own (they are set by "
                    "train_few_shot)."
                )
            classes, texts = list(self.classes_), list(self.class_texts_)
        else:
            if not isinstance(class_texts, Mapping):
                raise TypeError("class_texts must be a dict label -> text.")
            classes = [str(c) for c in class_texts]
            texts = [str(class_texts[c]) for c in class_texts]
        scores = langcell_zeroshot(
            self,
            _cell_tokens(adata, tokens_key),
            texts,
            alpha=alpha,
            use_ctm=use_ctm,
            batch_size=batch_size,
            progress=progress,
        )
        labels = np.asarray(classes, dtype=object)[scores.probs.argmax(axis=1)]
        return (labels, scores.probs) if return_probs else labels


def _cell_tokens(adata: Any, tokens_key: str) -> Any:
    """The cells' tokens from ``adata.obsm[tokens_key]``, tokenizing raw counts in ``adata.X`` first if absent."""
    from ...cell_tokens import CellTokens

    if tokens_key not in adata.obsm:
        from ...pp import tokenize

        logger.info("adata.obsm[%r] not found: tokenizing the cells from adata.X first", tokens_key)
        tokenize(adata, key_added=tokens_key)
    return CellTokens.from_sparse(adata.obsm[tokens_key], name=f"adata.obsm[{tokens_key!r}]")
