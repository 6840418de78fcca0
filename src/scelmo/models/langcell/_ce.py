"""``LangCellCE``: LangCell's cell encoder fine-tuned as a cell-type classifier (LangCell-CE).

A Hugging Face ``BertForSequenceClassification`` built on LangCell's ``cell_bert``: the
``<cls>`` hidden state goes through BERT's pooler (``tanh(Linear)``), dropout and a linear
classifier. Training follows the released ``LangCell-CE-annotation`` scripts: AdamW (lr 5e-5,
weight decay 0.001 on weights, none on biases and LayerNorms), a linear schedule with 500
warm-up steps, minibatches of 16 cells grouped by length, 20 epochs, gradients clipped to norm
1 (the Trainer's default). The few-shot "linear probe" variant trains only the classifier
(lr 5e-3, no warm-up); the pooler keeps its random initialisation, as in the original.

Differences from the original: the ``<cls>`` row is added to the vocabulary when the
checkpoint lacks it, whatever the vocabulary size (the original refused sizes other than
25,426 and 25,427); warm-up is capped at 10% of the steps (see
:func:`~scelmo.models.langcell._training.scaled_warmup`); the frozen encoder of the linear
probe runs without building a graph; CPU by default.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._logging import logger
from ..._optional import import_optional
from ...cell_tokens import CellTokens
from ._checkpoint import (
    MANIFEST,
    CheckpointError,
    check_sizes,
    checkpoint_folder,
    load_checked,
    read_json,
    read_state_dict,
    save_safetensors,
    verify_folder,
)
from ._config import CELL_BERT_DIR, CELL_CLS_TOKEN_ID, CELL_PAD_TOKEN_ID
from ._encode import check_token_ids
from ._training import (
    TrainingHistory,
    _epochs,
    decay_groups,
    length_grouped_batches,
    linear_schedule,
    scaled_warmup,
)

torch = import_optional("torch", "langcell", purpose="LangCellCE")
transformers = import_optional("transformers", "langcell", purpose="LangCellCE")
F = torch.nn.functional

_FORMAT = "scelmo.langcell_ce"
_FORMAT_VERSION = 1
_SETUP_KEY = "_scelmo_langcell_ce"
_MODEL_DIR = "model"
_META = "langcell_ce.json"


def _setup_of(adata: AnnData) -> dict[str, Any]:
    setup = adata.uns.get(_SETUP_KEY)
    if setup is None:
        raise ValueError(
            "This AnnData is not set up for LangCellCE: call "
            "scelmo.models.LangCellCE.setup_anndata(adata, labels_key=...) first."
        )
    return dict(setup)


def _load_cell_bert(source: Any) -> Any:
    """The pretrained cell encoder: from a LangCell, a LangCell checkpoint folder or a BERT folder."""
    from ._model import LangCell, _cell_bert

    if isinstance(source, LangCell):
        return source.cell_bert
    if hasattr(source, "config") and hasattr(source, "embeddings") and hasattr(source, "encoder"):
        return source  # a transformers BertModel
    if not isinstance(source, str | os.PathLike):
        raise TypeError(
            "pretrained must be a scelmo.models.LangCell, a LangCell checkpoint folder or a BERT folder "
            f"(config.json + weights), got {type(source).__name__}."
        )
    root = Path(source)
    folder = root / CELL_BERT_DIR if (root / CELL_BERT_DIR / "config.json").is_file() else root
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{root} is neither a LangCell checkpoint (with cell_bert/) nor a BERT folder with config.json."
        )
    if folder != root:
        from ._config import LANGCELL_CONFIG
        from ._model import _FORMAT as LANGCELL_FORMAT

        verify_folder(root, marker=LANGCELL_CONFIG, writer=LANGCELL_FORMAT)
    values = read_json(folder / "config.json", "the cell encoder's configuration")
    state, path = read_state_dict(folder, CELL_BERT_DIR)
    check_sizes(values, state, part=CELL_BERT_DIR, config_path=folder / "config.json", source=path)
    values = {k: v for k, v in values.items() if not k.startswith("_attn_implementation")}
    bert = _cell_bert(values, "sdpa")
    load_checked(bert, state, part=CELL_BERT_DIR, source=path)
    return bert


def _state_with_cls_row(bert: Any, cls_token_id: int, generator: Any) -> tuple[dict[str, Any], int]:
    """The encoder's weights, with word-embedding rows added up to ``cls_token_id`` when the vocabulary lacks it.

    New rows get BERT's initialisation (normal, ``initializer_range``); they are learned in
    training. The pretrained module itself is not changed.
    """
    state = {k: v for k, v in bert.state_dict().items() if not k.startswith("pooler.")}
    key = "embeddings.word_embeddings.weight"
    weight = state[key]
    old = int(weight.shape[0])
    if cls_token_id < old:
        return state, old
    std = float(getattr(bert.config, "initializer_range", 0.02))
    extra = torch.randn(cls_token_id + 1 - old, weight.shape[1], generator=generator) * std
    state[key] = torch.cat([weight.detach().cpu(), extra.to(weight.dtype)])
    logger.warning(
        "the cell encoder's vocabulary (%d tokens) has no <cls> token %d: added %d row(s), randomly initialised "
        "(they are learned in training)",
        old,
        cls_token_id,
        cls_token_id + 1 - old,
    )
    return state, cls_token_id + 1


class LangCellCE:
    """LangCell-CE: LangCell's cell encoder fine-tuned as a cell-type classifier (scvi-tools style).

    ``BertForSequenceClassification`` on the cell encoder's ``<cls>`` state (BERT pooler,
    dropout, linear classifier), trained with cross-entropy: AdamW lr 5e-5, weight decay 0.001,
    linear schedule with 500 warm-up steps (at most 10% of the steps), batches of 16 cells of
    similar length, 20 epochs. ``train(linear_probe=True)`` is the few-shot variant that trains
    only the classifier (lr 5e-3). Everything is seeded; CPU by default (``device=``).

    Parameters
    ----------
    adata
        AnnData set up with :meth:`setup_anndata` (with a ``labels_key``).
    pretrained
        The pretrained cell encoder: a :class:`~scelmo.models.LangCell`, a LangCell checkpoint
        folder (its ``cell_bert/`` is used), or any BERT folder over Geneformer V1 tokens
        (``config.json`` + weights). A vocabulary without the ``<cls>`` token gets that row
        added (randomly initialised).
    cls_token_id
        Token id of ``<cls>`` (LangCell's 25426; taken from a LangCell when given one).
    dropout
        Dropout before the classifier; default the encoder's ``hidden_dropout_prob`` (as
        ``BertForSequenceClassification``).
    seed
        Seed of the new weights (pooler, classifier, any added ``<cls>`` row), of the minibatch
        order and of dropout.

    Attributes
    ----------
    labels_
        The classes, in the order of the classifier's outputs.
    history_
        Per-epoch loss and training accuracy of :meth:`train`.

    Examples
    --------
    >>> import scelmo as se
    >>> se.pp.tokenize(adata, layer="counts")  # doctest: +SKIP
    >>> se.models.LangCellCE.setup_anndata(adata, labels_key="cell_type")  # doctest: +SKIP
    >>> model = se.models.LangCellCE(adata, pretrained="path/to/langcell")  # doctest: +SKIP
    >>> model.train()  # doctest: +SKIP
    >>> query.obs["predicted"] = model.predict(query)  # doctest: +SKIP
    >>> query.obsm["X_langcell_ce"] = model.get_latent_representation(query)  # doctest: +SKIP
    >>> model.save("langcell_ce/")  # doctest: +SKIP
    >>> model = se.models.LangCellCE.load("langcell_ce/", adata)  # doctest: +SKIP
    """

    def __init__(
        self,
        adata: AnnData | None = None,
        pretrained: Any = None,
        *,
        cls_token_id: int | None = None,
        dropout: float | None = None,
        seed: int = 0,
        _labels: Sequence[str] | None = None,
        _module: Any = None,
    ) -> None:
        from ._model import LangCell

        self.adata = adata
        self.seed = int(seed)
        self.history_ = TrainingHistory()
        self.is_trained_ = False
        if _module is not None:  # from load()
            self.module = _module
            self.labels_ = [str(c) for c in _labels or []]
            self.cls_token_id = int(CELL_CLS_TOKEN_ID if cls_token_id is None else cls_token_id)
            self.setup_ = _setup_of(adata) if adata is not None and _SETUP_KEY in adata.uns else {}
            return
        if adata is None:
            raise ValueError("LangCellCE needs the training AnnData (set up with LangCellCE.setup_anndata).")
        if pretrained is None:
            raise ValueError(
                "LangCellCE needs `pretrained`: a LangCell, a LangCell checkpoint folder or a BERT folder."
            )
        self.setup_ = _setup_of(adata)
        labels_key = self.setup_.get("labels_key")
        if not labels_key:
            raise ValueError(
                "LangCellCE.setup_anndata was called without labels_key; the classifier needs labels."
            )
        self.labels_ = list(self.setup_["labels"])
        if len(self.labels_) < 2:
            raise ValueError(
                f"adata.obs[{labels_key!r}] has {len(self.labels_)} label(s); a classifier needs at least 2."
            )
        if cls_token_id is None:
            cls_token_id = pretrained.cls_token_id if isinstance(pretrained, LangCell) else CELL_CLS_TOKEN_ID
        self.cls_token_id = int(cls_token_id)

        bert = _load_cell_bert(pretrained)
        generator = torch.Generator().manual_seed(self.seed)
        state, vocab_size = _state_with_cls_row(bert, self.cls_token_id, generator)
        values = {k: v for k, v in bert.config.to_dict().items() if not k.startswith("_attn_implementation")}
        values.update(
            vocab_size=vocab_size,
            num_labels=len(self.labels_),
            id2label=dict(enumerate(self.labels_)),
            label2id={c: i for i, c in enumerate(self.labels_)},
            architectures=["BertForSequenceClassification"],
        )
        if dropout is not None:
            values["classifier_dropout"] = float(dropout)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            config = transformers.BertConfig.from_dict(values, attn_implementation=_attn(bert))
            module = transformers.BertForSequenceClassification(config)
        # Pooler and classifier: BERT's initialisation, seeded.
        with torch.no_grad():
            for layer in (module.bert.pooler.dense, module.classifier):
                layer.weight.copy_(
                    torch.randn(layer.weight.shape, generator=generator) * config.initializer_range
                )
                layer.bias.zero_()
        missing, unexpected = module.bert.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if not k.endswith("position_ids")]
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise ValueError(
                f"The pretrained cell encoder does not fit: missing {missing}, unexpected {unexpected}."
            )
        self.module = module.to(bert.embeddings.word_embeddings.weight.device).eval()
        logger.info(
            "LangCellCE: %d classes, cell encoder %d layers x %d",
            len(self.labels_),
            config.num_hidden_layers,
            config.hidden_size,
        )

    def __repr__(self) -> str:
        state = "trained" if self.is_trained_ else "not trained"
        return (
            f"LangCellCE({len(self.labels_)} classes, {self.module.config.num_hidden_layers} layers x "
            f"{self.module.config.hidden_size}, {state})"
        )

    # --- data -----------------------------------------------------------------------------

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        labels_key: str | None = None,
        *,
        tokens_key: str = "langcell_tokens",
        layer: str | None = None,
        use_raw: bool = False,
        gene_id_key: str | None = None,
    ) -> None:
        """Register the labels and the rank-value tokens of ``adata`` (tokenizing the counts if needed).

        Parameters
        ----------
        adata
            The cells. If ``adata.obsm[tokens_key]`` is absent, the raw counts (``adata.X``,
            ``layers[layer]`` or ``raw``) are tokenized with :func:`scelmo.pp.tokenize`.
        labels_key
            Column of ``adata.obs`` with the cell types (cells with ``NaN`` are not trained on).
            Not needed for an AnnData that is only predicted on.
        tokens_key
            Key of the tokens in ``adata.obsm``.
        layer, use_raw, gene_id_key
            Where the counts and gene ids are, for tokenizing (see :func:`scelmo.pp.tokenize`).

        Returns
        -------
        ``None``; writes ``adata.uns['_scelmo_langcell_ce']`` (the keys and the label order) and,
        when tokenizing, ``adata.obsm[tokens_key]``.

        Examples
        --------
        >>> se.models.LangCellCE.setup_anndata(adata, labels_key="cell_type", layer="counts")  # doctest: +SKIP
        """
        if labels_key is not None and labels_key not in adata.obs.columns:
            raise KeyError(f"adata.obs has no column {labels_key!r}; it has {list(adata.obs.columns)}.")
        if tokens_key not in adata.obsm:
            from ...pp import tokenize

            tokenize(adata, layer=layer, use_raw=use_raw, gene_id_key=gene_id_key, key_added=tokens_key)
        labels: list[str] = []
        if labels_key is not None:
            values = adata.obs[labels_key]
            if isinstance(values.dtype, pd.CategoricalDtype):
                labels = [str(c) for c in values.cat.categories if (values == c).any()]
            else:
                labels = sorted({str(v) for v in values.dropna()})
        adata.uns[_SETUP_KEY] = {
            "labels_key": labels_key or "",
            "tokens_key": tokens_key,
            "labels": labels,
            "layer": layer or "",
            "use_raw": bool(use_raw),
            "gene_id_key": gene_id_key or "",
        }

    def _tokens(self, adata: AnnData | None) -> tuple[AnnData, CellTokens]:
        adata = self.adata if adata is None else adata
        if adata is None:
            raise ValueError("Pass the AnnData to use (this model was loaded without one).")
        tokens_key = self.setup_.get("tokens_key", "langcell_tokens")
        if _SETUP_KEY in adata.uns:
            tokens_key = adata.uns[_SETUP_KEY].get("tokens_key", tokens_key)
        if tokens_key not in adata.obsm:
            from ...pp import tokenize

            tokenize(
                adata,
                layer=self.setup_.get("layer") or None,
                use_raw=bool(self.setup_.get("use_raw", False)),
                gene_id_key=self.setup_.get("gene_id_key") or None,
                key_added=tokens_key,
            )
        return adata, CellTokens.from_sparse(adata.obsm[tokens_key], name=f"adata.obsm[{tokens_key!r}]")

    @property
    def device(self) -> Any:
        """Device of the weights."""
        return self.module.classifier.weight.device

    @property
    def _max_length(self) -> int:
        return int(self.module.config.max_position_embeddings)

    def _batch(self, tokens: CellTokens, index: np.ndarray) -> tuple[Any, Any]:
        pad = self.module.config.pad_token_id
        ids, mask = tokens.pad(
            index,
            prefix=self.cls_token_id,
            max_length=self._max_length,
            pad_token_id=CELL_PAD_TOKEN_ID if pad is None else int(pad),
        )
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    # --- training -------------------------------------------------------------------------

    def train(
        self,
        *,
        epochs: int = 20,
        batch_size: int = 16,
        lr: float | None = None,
        warmup_steps: int | None = None,
        weight_decay: float = 0.001,
        max_grad_norm: float | None = 1.0,
        linear_probe: bool = False,
        device: str | Any | None = None,
        progress: bool = True,
    ) -> TrainingHistory:
        """Fine-tune on the labelled cells of the AnnData given at construction.

        Parameters
        ----------
        epochs, batch_size
            20 and 16 as published.
        lr
            Peak learning rate; default 5e-5, or 5e-3 with ``linear_probe``.
        warmup_steps
            Linear warm-up; default 500 (0 with ``linear_probe``), at most 10% of all steps
            (the original's 500 steps assumed tens of thousands of cells).
        weight_decay
            AdamW weight decay of the weights (not of biases and LayerNorms).
        max_grad_norm
            Clip the gradient norm (``None``: no clipping).
        linear_probe
            Train only the classifier (the few-shot variant), the encoder and pooler frozen.
        device
            Move the model there first (it stays); default where it is (the CPU).
        progress
            Show a progress bar.

        Returns
        -------
        The per-epoch loss and training accuracy (also in ``history_``).

        Examples
        --------
        >>> model.train(epochs=20)  # doctest: +SKIP
        >>> fewshot.train(linear_probe=True)  # doctest: +SKIP
        """
        if device is not None:
            self.module.to(device)
        adata, tokens = self._tokens(None)
        check_token_ids(tokens, int(self.module.config.vocab_size), cls_token_id=self.cls_token_id)
        labels_key = self.setup_["labels_key"]
        values = adata.obs[labels_key]
        known = {c: i for i, c in enumerate(self.labels_)}
        labelled = np.flatnonzero(
            np.asarray(values.notna()) & np.asarray(values.astype(str).isin(list(known)))
        )
        if labelled.size == 0:
            raise ValueError(f"No cell of adata.obs[{labels_key!r}] has one of the labels {self.labels_}.")
        y_all = torch.as_tensor([known[str(v)] for v in values.iloc[labelled]], device=self.device)
        tokens = tokens.subset(labelled)
        lr = (5e-3 if linear_probe else 5e-5) if lr is None else float(lr)
        warmup_steps = (0 if linear_probe else 500) if warmup_steps is None else int(warmup_steps)

        module = self.module
        for name, param in module.named_parameters():
            param.requires_grad_(not linear_probe or name.startswith("classifier."))
        optimizer = torch.optim.AdamW(decay_groups(module, weight_decay), lr=lr)
        rng = np.random.default_rng(self.seed)
        n_batches = -(-labelled.size // batch_size)
        total = epochs * n_batches
        warmup = scaled_warmup(warmup_steps, total)
        schedule = linear_schedule(optimizer, warmup, total)
        history = TrainingHistory(parts={"lr": []})
        device_ = self.device
        with torch.random.fork_rng(devices=[device_] if device_.type == "cuda" else []):
            torch.manual_seed(self.seed)
            module.train()
            try:
                for _, bar in _epochs(epochs, progress, total, "LangCellCE"):
                    loss_sum, correct = 0.0, 0
                    for index in length_grouped_batches(tokens.lengths, batch_size, rng):
                        ids, mask = self._batch(tokens, index)
                        y = y_all[torch.from_numpy(index).to(device_)]
                        logits = self._logits(ids, mask, frozen_encoder=linear_probe)
                        loss = F.cross_entropy(logits, y)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        if max_grad_norm is not None:
                            torch.nn.utils.clip_grad_norm_(
                                [p for p in module.parameters() if p.requires_grad], max_grad_norm
                            )
                        optimizer.step()
                        schedule.step()
                        loss_sum += loss.item() * len(index)
                        correct += int((logits.argmax(-1) == y).sum())
                        bar.update(1)
                    history.loss.append(loss_sum / labelled.size)
                    history.accuracy.append(correct / labelled.size)
                    history.parts["lr"].append(float(schedule.get_last_lr()[0]))
                    bar.set_postfix(loss=f"{history.loss[-1]:.3f}", acc=f"{history.accuracy[-1]:.2f}")
            finally:
                module.eval()
                for param in module.parameters():
                    param.requires_grad_(True)
        self.history_ = history
        self.is_trained_ = True
        self.train_params_ = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "warmup_steps": warmup,
            "weight_decay": weight_decay,
            "linear_probe": linear_probe,
            "n_cells": int(labelled.size),
        }
        logger.info(
            "trained LangCellCE on %d cells: %d epochs, final loss %.4g, training accuracy %.3f",
            labelled.size,
            epochs,
            history.loss[-1] if history.loss else float("nan"),
            history.accuracy[-1] if history.accuracy else float("nan"),
        )
        return history

    def _logits(self, ids: Any, mask: Any, *, frozen_encoder: bool = False) -> Any:
        module = self.module
        if not frozen_encoder:
            return module(input_ids=ids, attention_mask=mask).logits
        # Linear probe: nothing before the classifier is trained, so no graph is kept for it
        # (dropout still acts, as in the original).
        with torch.no_grad():
            pooled = module.bert(input_ids=ids, attention_mask=mask).pooler_output
        return module.classifier(module.dropout(pooled))

    # --- inference ------------------------------------------------------------------------

    def _run(self, adata: AnnData | None, batch_size: int, what: str, progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        from ._encode import cell_batches

        adata, tokens = self._tokens(adata)
        width = len(self.labels_) if what == "logits" else self.module.config.hidden_size
        out = np.empty((tokens.n_cells, width), dtype=np.float32)
        pad = self.module.config.pad_token_id
        batches = cell_batches(
            tokens,
            batch_size=batch_size,
            cls_token_id=self.cls_token_id,
            max_length=self._max_length,
            pad_token_id=CELL_PAD_TOKEN_ID if pad is None else int(pad),
            vocab_size=int(self.module.config.vocab_size),
        )
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.inference_mode(), tqdm(total=tokens.n_cells, unit="cell", disable=not progress) as bar:
                for index, ids, mask in batches:
                    ids_t = torch.from_numpy(ids).to(self.device)
                    mask_t = torch.from_numpy(mask).to(self.device)
                    if what == "logits":
                        result = self.module(input_ids=ids_t, attention_mask=mask_t).logits
                    else:
                        result = self.module.bert(input_ids=ids_t, attention_mask=mask_t).last_hidden_state[
                            :, 0
                        ]
                    out[index] = result.float().cpu().numpy()
                    bar.update(len(index))
        finally:
            self.module.train(was_training)
        return out

    def predict(
        self,
        adata: AnnData | None = None,
        *,
        batch_size: int = 32,
        return_probs: bool = False,
        progress: bool = True,
    ) -> np.ndarray | tuple[np.ndarray, pd.DataFrame]:
        """Predicted cell type of every cell.

        Parameters
        ----------
        adata
            Cells to label (default: the training AnnData); tokens are computed when absent,
            as set up.
        batch_size
            Cells per pass (length-sorted batches).
        return_probs
            Also return the class probabilities (cells x classes data frame).
        progress
            Show a progress bar.

        Returns
        -------
        Labels (object array), or ``(labels, probabilities)``.

        Examples
        --------
        >>> query.obs["predicted"] = model.predict(query)  # doctest: +SKIP
        """
        logits = self._run(adata, batch_size, "logits", progress)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        labels = np.asarray(self.labels_, dtype=object)[probs.argmax(axis=1)]
        if not return_probs:
            return labels
        target = self.adata if adata is None else adata
        return labels, pd.DataFrame(probs, index=target.obs_names, columns=self.labels_)

    def get_latent_representation(
        self, adata: AnnData | None = None, *, batch_size: int = 32, progress: bool = True
    ) -> np.ndarray:
        """The fine-tuned encoder's ``<cls>`` hidden state of every cell, ``(n_obs, hidden)`` float32.

        Examples
        --------
        >>> adata.obsm["X_langcell_ce"] = model.get_latent_representation(adata)  # doctest: +SKIP
        """
        return self._run(adata, batch_size, "cls", progress)

    # --- persistence ----------------------------------------------------------------------

    def save(
        self, path: str | os.PathLike[str], *, overwrite: bool = False, save_anndata: bool = False
    ) -> None:
        """Write the model, whole or not at all: ``model/`` (a Hugging Face ``BertForSequenceClassification`` folder) and ``langcell_ce.json``.

        A ``scelmo_manifest.json`` (every file's size and SHA-256, checked by :meth:`load`) is
        written last, into a temporary sibling folder that is then renamed into place: if saving
        fails, ``path`` is as it was and no partial folder remains.

        Parameters
        ----------
        path
            Folder to write (created).
        overwrite
            Replace an existing LangCellCE folder as a whole (a non-empty folder that holds no
            such model is never replaced).
        save_anndata
            Also write the training AnnData as ``adata.h5ad``.

        Examples
        --------
        >>> model.save("langcell_ce/")  # doctest: +SKIP
        """
        with checkpoint_folder(
            path,
            overwrite=overwrite,
            writer=_FORMAT,
            version=_FORMAT_VERSION,
            replaceable=(_META, _MODEL_DIR, MANIFEST),
        ) as root:
            self._write_parts(root, save_anndata=save_anndata)
        logger.info("saved LangCellCE to %s", Path(path))

    def _write_parts(self, root: Path, *, save_anndata: bool) -> None:
        """Every file of the model, into the (new, empty) folder ``root``."""
        (root / _MODEL_DIR).mkdir(parents=True, exist_ok=True)
        config = self.module.config.to_dict()
        config.pop("_attn_implementation_autoset", None)
        (root / _MODEL_DIR / "config.json").write_text(
            json.dumps(config, indent=2, sort_keys=True), encoding="utf-8"
        )
        save_safetensors(self.module, root / _MODEL_DIR / "model.safetensors")
        meta = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "labels": list(self.labels_),
            "cls_token_id": self.cls_token_id,
            "seed": self.seed,
            "setup": dict(self.setup_),
            "is_trained": self.is_trained_,
            "history": self.history_.to_dict(),
            "train_params": getattr(self, "train_params_", {}),
        }
        (root / _META).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
        if save_anndata and self.adata is not None:
            self.adata.write_h5ad(root / "adata.h5ad")

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], adata: AnnData | None = None, *, device: str | Any | None = None
    ) -> LangCellCE:
        """Read a model written by :meth:`save`.

        Parameters
        ----------
        path
            The folder.
        adata
            The AnnData to attach (default: ``adata.h5ad`` in the folder, if saved); used by
            :meth:`predict` and :meth:`get_latent_representation` when they get none.
        device
            Move the model there.

        Examples
        --------
        >>> model = se.models.LangCellCE.load("langcell_ce/", adata)  # doctest: +SKIP
        """
        root = Path(path)
        meta_path = root / _META
        if not root.is_dir():
            raise FileNotFoundError(f"LangCellCE folder not found: {root}")
        if not verify_folder(root, marker=_META, writer=_FORMAT):
            raise FileNotFoundError(
                f"{root / MANIFEST} and {meta_path} are missing: {root} was not written by LangCellCE.save."
            )
        meta = read_json(meta_path, "LangCellCE's settings")
        if meta.get("format") != _FORMAT or int(meta.get("version", 0)) > _FORMAT_VERSION:
            raise ValueError(f"{meta_path} is not a LangCellCE file this scelmo can read; upgrade scelmo.")
        config_path = root / _MODEL_DIR / "config.json"
        values = read_json(config_path, "the classifier's configuration")
        state, source = read_state_dict(root / _MODEL_DIR, "LangCellCE")
        check_sizes(values, state, part="LangCellCE", config_path=config_path, source=source)
        values = {k: v for k, v in values.items() if not k.startswith("_attn_implementation")}
        try:
            config = transformers.BertConfig.from_dict(values, attn_implementation="sdpa")
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{config_path} is not a valid BERT configuration: {err}") from err
        module = transformers.BertForSequenceClassification(config)
        load_checked(module, state, part="LangCellCE", source=source)
        if adata is None and (root / "adata.h5ad").is_file():
            import anndata

            adata = anndata.read_h5ad(root / "adata.h5ad")
        model = cls(
            adata,
            cls_token_id=int(meta["cls_token_id"]),
            seed=int(meta.get("seed", 0)),
            _labels=meta["labels"],
            _module=module.eval(),
        )
        if not model.setup_:
            model.setup_ = dict(meta.get("setup", {}))
        model.is_trained_ = bool(meta.get("is_trained", False))
        model.history_ = TrainingHistory.from_dict(meta.get("history"))
        model.train_params_ = dict(meta.get("train_params", {}))
        if device is not None:
            model.module.to(device)
        return model


def _attn(bert: Any) -> str:
    impl = getattr(bert.config, "_attn_implementation", None)
    return impl if impl in ("sdpa", "eager") else "sdpa"
