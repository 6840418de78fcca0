"""``LangCell``: the network, loaded from and saved to checkpoint folders, fine-tuned and used to label cells.

The torch module and its computations are :class:`~scelmo.models.langcell._network.LangCellNetwork`;
reading and writing folders is :mod:`scelmo.models.langcell._io`; few-shot training is
:mod:`scelmo.models.langcell._training`; zero-shot scoring is :mod:`scelmo.models.langcell._zeroshot`.
This class puts them together and takes AnnData for the user (through :mod:`scelmo._anndata`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scelmo._anndata import cell_tokens
from scelmo._logging import logger

from ._config import CELL_CLS_TOKEN_ID, TEXT_MAX_LENGTH
from ._io import LANGCELL_FOLDER, read_parts, write_parts
from ._network import LangCellNetwork
from ._setup import label_column

if TYPE_CHECKING:
    import os
    from typing import Self

    from anndata import AnnData
    from torch import device as Device

    from ._network import TokenizerSource
    from ._training import TrainingHistory


def _classes_and_texts(class_texts: Mapping[str, str]) -> tuple[list[str], list[str]]:
    if not isinstance(class_texts, Mapping):
        raise TypeError("class_texts must be a dict label -> text.")
    classes = [str(c) for c in class_texts]
    return classes, [str(class_texts[c]) for c in class_texts]


class LangCell(LangCellNetwork):
    """LangCell (Zhao et al., ICML 2024): a cell encoder and a text encoder in one 256-d space.

    - cell embedding: ``normalize(cell_proj(cell_bert(ids, mask).last_hidden_state[:, 0]))``;
    - text embedding: ``normalize(text_proj(text_bert(tokens).last_hidden_state[:, 0]))``;
    - cell-text matching (CTM): ``ctm_head`` on the ``[CLS]`` state of ``text_bert`` run on the
      text with cross-attention to the cell's last hidden states; index 1 means "match".

    Load a checkpoint with :meth:`from_pretrained`; encode an AnnData with
    :func:`scelmo.tl.langcell_encode`. The parameters are those of
    :class:`~scelmo.models.langcell._network.LangCellNetwork`.

    Examples
    --------
    >>> from scelmo.models import LangCell
    >>> model = LangCell.from_pretrained("path/to/langcell", text_tokenizer="path/to/pubmedbert")  # doctest: +SKIP
    >>> text_emb = model.encode_texts(["cell type: T cell. A lymphocyte ...", "cell type: B cell. ..."])  # doctest: +SKIP
    >>> text_emb.shape  # doctest: +SKIP
    torch.Size([2, 256])
    """

    # --- checkpoints ----------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        text_tokenizer: TokenizerSource = None,
        attn_implementation: str | None = "sdpa",
        device: str | Device | None = None,
    ) -> Self:
        """Load a LangCell checkpoint folder (the original five-part layout or one written by :meth:`save`).

        Every tensor is checked against the model built from the configuration files: a wrong
        shape, a missing or an unexpected tensor raises an error naming it (unused pooler
        weights and position-id buffers are skipped). ``.bin`` files are read with
        ``torch.load(weights_only=True)``; ``.safetensors`` files are preferred when both exist.
        A folder written by :meth:`save` is first checked against its manifest (every file's
        size and SHA-256).

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
            If a tensor is missing, unexpected or of the wrong shape, or a file differs from the
            folder's manifest.

        Examples
        --------
        >>> from scelmo.models import LangCell
        >>> model = LangCell.from_pretrained("path/to/langcell")  # doctest: +SKIP
        """
        root = Path(path)
        settings = LANGCELL_FOLDER.read_settings(root, required=False)
        parts = read_parts(root, attn_implementation)
        model = cls(
            parts.cell_bert,
            parts.text_bert,
            parts.cell_proj,
            parts.text_proj,
            parts.ctm_head,
            text_tokenizer=parts.text_tokenizer if text_tokenizer is None else text_tokenizer,
            cls_token_id=int(settings.get("cls_token_id", CELL_CLS_TOKEN_ID)),
            text_max_length=int(settings.get("text_max_length", TEXT_MAX_LENGTH)),
        ).eval()
        if settings.get("classes") and settings.get("class_texts"):
            model.classes_ = [str(c) for c in settings["classes"]]
            model.class_texts_ = [str(t) for t in settings["class_texts"]]
        cell_cfg, text_cfg = model.cell_bert.config, model.text_bert.config
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
        LANGCELL_FOLDER.save(path, lambda root: write_parts(self, root), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Self:
        """Read a model written by :meth:`save` (the same as :meth:`from_pretrained`).

        Examples
        --------
        >>> model.save("my_langcell")  # doctest: +SKIP
        >>> model = LangCell.load("my_langcell")  # doctest: +SKIP
        """
        return cls.from_pretrained(path, **kwargs)

    # --- few-shot training and prediction ---------------------------------------------------

    def train_few_shot(
        self,
        adata: AnnData,
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
    ) -> TrainingHistory:
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
        from ._training import train_few_shot

        values = label_column(adata, labels_key)
        labelled = np.asarray(values.notna())
        present = sorted({str(v) for v in values[labelled]})
        if class_texts is None:
            class_texts = {label: f"cell type: {label}." for label in present}
        classes, texts = _classes_and_texts(class_texts)
        missing = [label for label in present if label not in class_texts]
        if missing:
            raise KeyError(f"class_texts has no text for the labels {missing} of adata.obs[{labels_key!r}].")
        position = {c: i for i, c in enumerate(classes)}
        cells = np.flatnonzero(labelled)
        y = np.array([position[str(v)] for v in values.iloc[cells]], dtype=np.int64)
        tokens = cell_tokens(adata, tokens_key).subset(cells)
        options: dict[str, Any] = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "text_lr": text_lr}
        history = train_few_shot(self, tokens, y, texts, **options, seed=seed, progress=progress)
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
        adata: AnnData,
        class_texts: Mapping[str, str] | None = None,
        *,
        alpha: float = 0.1,
        use_ctm: bool = True,
        tokens_key: str = "langcell_tokens",
        batch_size: int = 32,
        return_probs: bool = False,
        progress: bool = True,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
        from ._zeroshot import langcell_zeroshot

        if class_texts is None:
            if self.classes_ is None or self.class_texts_ is None:
                raise ValueError(
                    "Pass class_texts (label -> text): this model has no classes of its own (they are set by "
                    "train_few_shot)."
                )
            classes, texts = list(self.classes_), list(self.class_texts_)
        else:
            classes, texts = _classes_and_texts(class_texts)
        tokens = cell_tokens(adata, tokens_key)
        options: dict[str, Any] = {
            "alpha": alpha,
            "use_ctm": use_ctm,
            "batch_size": batch_size,
            "progress": progress,
        }
        scores = langcell_zeroshot(self, tokens, texts, **options)
        labels = np.asarray(classes, dtype=object)[scores.probs.argmax(axis=1)]
        return (labels, scores.probs) if return_probs else labels
