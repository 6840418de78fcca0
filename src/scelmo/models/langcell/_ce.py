"""``LangCellCE``: LangCell's cell encoder fine-tuned as a cell-type classifier (LangCell-CE), scvi-tools style.

The network is built, read and run in :mod:`scelmo.models.langcell._ce_module`, trained in
:mod:`scelmo.models.langcell._ce_training`; what ``setup_anndata`` registers is a
:class:`~scelmo.models.langcell._setup.TokenSetup`; saving uses the folder format shared with
:class:`~scelmo.models.LangCell` (:mod:`scelmo.models._pretrained`). Differences from the
original ``LangCell-CE-annotation`` scripts: the ``<cls>`` row is added to the vocabulary when the
checkpoint lacks it; warm-up is capped at 10% of the steps; the frozen encoder of the linear
probe runs without building a graph; CPU by default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from scelmo._logging import logger
from scelmo.models._pretrained import FolderFormat, write_hf_config

from ._ce_module import build_classifier, classifier_outputs, load_cell_bert, read_classifier
from ._checkpoint import save_safetensors
from ._config import CELL_CLS_TOKEN_ID
from ._network import LangCellNetwork
from ._setup import SETUP_KEY, TokenSetup
from ._training import TrainingHistory

if TYPE_CHECKING:
    import os

    from anndata import AnnData
    from torch import device as Device
    from transformers import BertForSequenceClassification

    from scelmo.cell_tokens import CellTokens

    from ._ce_module import PretrainedSource

_MODEL_DIR = "model"
#: How :meth:`LangCellCE.save` folders are recognised and versioned.
LANGCELL_CE_FOLDER = FolderFormat(
    writer="scelmo.langcell_ce",
    version=1,
    settings_file="langcell_ce.json",
    name="LangCellCE",
    replaceable=(_MODEL_DIR,),
)


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
        pretrained: PretrainedSource | None = None,
        *,
        cls_token_id: int | None = None,
        dropout: float | None = None,
        seed: int = 0,
        _labels: Sequence[str] | None = None,
        _module: BertForSequenceClassification | None = None,
    ) -> None:
        self.adata = adata
        self.seed = int(seed)
        self.history_ = TrainingHistory()
        self.is_trained_ = False
        self.train_params_: dict[str, Any] = {}
        if _module is not None:  # from load()
            self.module = _module
            self.labels_ = [str(c) for c in _labels or []]
            self.cls_token_id = int(CELL_CLS_TOKEN_ID if cls_token_id is None else cls_token_id)
            self.setup_ = (
                TokenSetup.read(adata) if adata is not None and SETUP_KEY in adata.uns else TokenSetup()
            )
            return
        if adata is None:
            raise ValueError("LangCellCE needs the training AnnData (set up with LangCellCE.setup_anndata).")
        if pretrained is None:
            raise ValueError(
                "LangCellCE needs `pretrained`: a LangCell, a LangCell checkpoint folder or a BERT folder."
            )
        self.setup_ = TokenSetup.read(adata)
        if not self.setup_.labels_key:
            raise ValueError(
                "LangCellCE.setup_anndata was called without labels_key; the classifier needs labels."
            )
        self.labels_ = list(self.setup_.labels)
        if len(self.labels_) < 2:
            raise ValueError(
                f"adata.obs[{self.setup_.labels_key!r}] has {len(self.labels_)} label(s); a classifier needs at least 2."
            )
        if cls_token_id is None:
            cls_token_id = (
                pretrained.cls_token_id if isinstance(pretrained, LangCellNetwork) else CELL_CLS_TOKEN_ID
            )
        self.cls_token_id = int(cls_token_id)
        bert = load_cell_bert(pretrained)
        self.module = build_classifier(
            bert, self.labels_, cls_token_id=self.cls_token_id, dropout=dropout, seed=self.seed
        )
        config = self.module.config
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
            ``layers[layer]`` or ``raw``) are tokenized as by :func:`scelmo.pp.tokenize`.
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
        TokenSetup.register(
            adata,
            labels_key=labels_key,
            tokens_key=tokens_key,
            layer=layer,
            use_raw=use_raw,
            gene_id_key=gene_id_key,
        )

    def _tokens(self, adata: AnnData | None) -> tuple[AnnData, CellTokens]:
        """The AnnData to use and its tokens: its own ``tokens_key`` if set up, tokenized as this model was."""
        adata = self.adata if adata is None else adata
        if adata is None:
            raise ValueError("Pass the AnnData to use (this model was loaded without one).")
        setup = self.setup_
        if SETUP_KEY in adata.uns:
            setup = dataclasses.replace(setup, tokens_key=TokenSetup.read(adata).tokens_key)
        return adata, setup.tokens(adata)

    @property
    def device(self) -> Device:
        """Device of the weights."""
        return self.module.classifier.weight.device

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
        device: str | Device | None = None,
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
        from ._ce_training import fit_classifier
        from ._encode import check_token_ids

        if device is not None:
            # transformers wraps Module.to in a decorator that the checker reads as taking a model.
            self.module.to(device)  # type: ignore[arg-type]
        adata, tokens = self._tokens(None)
        check_token_ids(tokens, int(self.module.config.vocab_size), cls_token_id=self.cls_token_id)
        cells, y = dataclasses.replace(self.setup_, labels=tuple(self.labels_)).labelled(adata)
        lr = (5e-3 if linear_probe else 5e-5) if lr is None else float(lr)
        warmup_steps = (0 if linear_probe else 500) if warmup_steps is None else int(warmup_steps)
        options: dict[str, Any] = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": weight_decay,
        }
        history, warmup = fit_classifier(
            self.module,
            tokens.subset(cells),
            y,
            cls_token_id=self.cls_token_id,
            warmup_steps=warmup_steps,
            max_grad_norm=max_grad_norm,
            linear_probe=linear_probe,
            seed=self.seed,
            progress=progress,
            **options,
        )
        self.history_, self.is_trained_ = history, True
        self.train_params_ = {
            **options,
            "warmup_steps": warmup,
            "linear_probe": linear_probe,
            "n_cells": int(cells.size),
        }
        logger.info(
            "trained LangCellCE on %d cells: %d epochs, final loss %.4g, training accuracy %.3f",
            cells.size,
            epochs,
            history.loss[-1] if history.loss else float("nan"),
            history.accuracy[-1] if history.accuracy else float("nan"),
        )
        return history

    # --- inference ------------------------------------------------------------------------

    def _run(
        self, adata: AnnData | None, batch_size: int, what: Literal["logits", "cls"], progress: bool
    ) -> np.ndarray:
        _, tokens = self._tokens(adata)
        return classifier_outputs(
            self.module,
            tokens,
            cls_token_id=self.cls_token_id,
            what=what,
            batch_size=batch_size,
            progress=progress,
        )

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
        if target is None:
            raise ValueError("Pass `adata`: this model was loaded without AnnData.")
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
        LANGCELL_CE_FOLDER.save(
            path, lambda root: self._write_parts(root, save_anndata=save_anndata), overwrite=overwrite
        )

    def _write_parts(self, root: Path, *, save_anndata: bool) -> dict[str, Any]:
        """Every file of the model into the (new, empty) folder ``root``; the settings to record."""
        write_hf_config(self.module.config, root / _MODEL_DIR)
        save_safetensors(self.module, root / _MODEL_DIR / "model.safetensors")
        if save_anndata and self.adata is not None:
            self.adata.write_h5ad(root / "adata.h5ad")
        return {
            "labels": list(self.labels_),
            "cls_token_id": self.cls_token_id,
            "seed": self.seed,
            "setup": self.setup_.to_dict(),
            "is_trained": self.is_trained_,
            "history": self.history_.to_dict(),
            "train_params": self.train_params_,
        }

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], adata: AnnData | None = None, *, device: str | Device | None = None
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
        settings = LANGCELL_CE_FOLDER.read_settings(root, required=True)
        module = read_classifier(root / _MODEL_DIR)
        if adata is None and (root / "adata.h5ad").is_file():
            import anndata

            adata = anndata.read_h5ad(root / "adata.h5ad")
        model = cls(
            adata,
            cls_token_id=int(settings["cls_token_id"]),
            seed=int(settings.get("seed", 0)),
            _labels=settings["labels"],
            _module=module,
        )
        if adata is None or SETUP_KEY not in adata.uns:
            model.setup_ = TokenSetup.from_dict(settings.get("setup", {}))
        model.is_trained_ = bool(settings.get("is_trained", False))
        model.history_ = TrainingHistory.from_dict(settings.get("history"))
        model.train_params_ = dict(settings.get("train_params", {}))
        if device is not None:
            model.module.to(device)  # type: ignore[arg-type]  # as in train(): transformers' wrapped Module.to
        return model
