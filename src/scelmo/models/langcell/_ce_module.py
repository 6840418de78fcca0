"""LangCell-CE's network: a ``BertForSequenceClassification`` on LangCell's cell encoder, built, read and run.

The ``<cls>`` hidden state goes through BERT's pooler (``tanh(Linear)``), dropout and a linear
classifier. The ``<cls>`` row is added to the vocabulary when the pretrained encoder lacks it,
whatever the vocabulary size (the original refused sizes other than 25,426 and 25,427).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from scelmo._logging import logger
from scelmo._optional import import_optional
from scelmo.models._checkpoint_folder import CheckpointError, read_json, verify_folder
from scelmo.models._pretrained import hf_config_dict

from ._checkpoint import check_sizes, load_checked, read_state_dict
from ._config import CELL_BERT_DIR, CELL_PAD_TOKEN_ID
from ._encode import cell_batches
from ._io import LANGCELL_FOLDER
from ._network import LangCellNetwork, build_cell_bert

if TYPE_CHECKING:
    from torch import Generator, Tensor
    from transformers import BertForSequenceClassification, BertModel

    from scelmo.cell_tokens import CellTokens

    #: The pretrained cell encoder: a LangCell, a transformers BertModel, or a folder.
    PretrainedSource = LangCellNetwork | BertModel | str | os.PathLike[str]

torch = import_optional("torch", "langcell", purpose="LangCellCE")
transformers = import_optional("transformers", "langcell", purpose="LangCellCE")


def load_cell_bert(source: PretrainedSource) -> BertModel:
    """The pretrained cell encoder: from a LangCell, a LangCell checkpoint folder or a BERT folder.

    Examples
    --------
    >>> from scelmo.models.langcell._ce_module import load_cell_bert
    >>> bert = load_cell_bert("path/to/langcell")  # doctest: +SKIP
    """
    if isinstance(source, LangCellNetwork):
        return source.cell_bert
    if hasattr(source, "config") and hasattr(source, "embeddings") and hasattr(source, "encoder"):
        return cast("BertModel", source)  # a transformers BertModel
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
        verify_folder(root, marker=LANGCELL_FOLDER.settings_file, writer=LANGCELL_FOLDER.writer)
    values = read_json(folder / "config.json", "the cell encoder's configuration")
    state, path = read_state_dict(folder, CELL_BERT_DIR)
    check_sizes(values, state, part=CELL_BERT_DIR, config_path=folder / "config.json", source=path)
    bert = build_cell_bert(hf_config_dict(values), "sdpa")
    load_checked(bert, state, part=CELL_BERT_DIR, source=path)
    return bert


def _state_with_cls_row(
    bert: BertModel, cls_token_id: int, generator: Generator
) -> tuple[dict[str, Tensor], int]:
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


def _attn(bert: BertModel) -> str:
    impl = getattr(bert.config, "_attn_implementation", None)
    return impl if impl in ("sdpa", "eager") else "sdpa"


def build_classifier(
    bert: BertModel, labels: Sequence[str], *, cls_token_id: int, dropout: float | None, seed: int
) -> BertForSequenceClassification:
    """A classifier on ``bert``'s weights, pooler and classifier seeded with BERT's initialisation.

    Examples
    --------
    >>> from scelmo.models.langcell._ce_module import build_classifier, load_cell_bert
    >>> module = build_classifier(load_cell_bert("path/to/langcell"), ["B", "T"], cls_token_id=25426,
    ...                           dropout=None, seed=0)  # doctest: +SKIP
    """
    generator = torch.Generator().manual_seed(seed)
    state, vocab_size = _state_with_cls_row(bert, cls_token_id, generator)
    values = hf_config_dict(bert.config)
    values.update(
        vocab_size=vocab_size,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={c: i for i, c in enumerate(labels)},
        architectures=["BertForSequenceClassification"],
    )
    if dropout is not None:
        values["classifier_dropout"] = float(dropout)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = transformers.BertConfig.from_dict(values, attn_implementation=_attn(bert))
        module = transformers.BertForSequenceClassification(config)
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
    return module.to(bert.embeddings.word_embeddings.weight.device).eval()


def read_classifier(folder: Path) -> BertForSequenceClassification:
    """The classifier saved in ``folder`` (``config.json`` + weights), sizes checked before it is built.

    Examples
    --------
    >>> from scelmo.models.langcell._ce_module import read_classifier
    >>> module = read_classifier(Path("langcell_ce/model"))  # doctest: +SKIP
    """
    config_path = folder / "config.json"
    values = read_json(config_path, "the classifier's configuration")
    state, source = read_state_dict(folder, "LangCellCE")
    check_sizes(values, state, part="LangCellCE", config_path=config_path, source=source)
    try:
        config = transformers.BertConfig.from_dict(hf_config_dict(values), attn_implementation="sdpa")
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path} is not a valid BERT configuration: {err}") from err
    module = transformers.BertForSequenceClassification(config)
    load_checked(module, state, part="LangCellCE", source=source)
    return module.eval()


def classifier_logits(
    module: BertForSequenceClassification, ids: Tensor, mask: Tensor, *, frozen_encoder: bool = False
) -> Tensor:
    """Logits of a batch; with ``frozen_encoder`` no graph is kept before the classifier.

    Examples
    --------
    >>> from scelmo.models.langcell._ce_module import classifier_logits
    >>> logits = classifier_logits(module, ids, mask, frozen_encoder=True)  # doctest: +SKIP
    """
    if not frozen_encoder:
        return module(input_ids=ids, attention_mask=mask).logits
    # Linear probe: nothing before the classifier is trained, so no graph is kept for it
    # (dropout still acts, as in the original).
    with torch.no_grad():
        pooled = module.bert(input_ids=ids, attention_mask=mask).pooler_output
    return module.classifier(module.dropout(pooled))


def pad_token_id(module: BertForSequenceClassification) -> int:
    """The encoder's padding token (Geneformer's 0 when the configuration has none).

    Examples
    --------
    >>> from scelmo.models.langcell._ce_module import pad_token_id
    >>> pad_token_id(model.module)  # doctest: +SKIP
    0
    """
    pad = module.config.pad_token_id
    return CELL_PAD_TOKEN_ID if pad is None else int(pad)


def classifier_outputs(
    module: BertForSequenceClassification,
    tokens: CellTokens,
    *,
    cls_token_id: int,
    what: Literal["logits", "cls"],
    batch_size: int,
    progress: bool,
) -> np.ndarray:
    """Logits, or the ``<cls>`` hidden state, of every cell (float32, in the cells' order).

    Examples
    --------
    >>> from scelmo.models.langcell._ce_module import classifier_outputs
    >>> logits = classifier_outputs(module, tokens, cls_token_id=25426, what="logits", batch_size=32,
    ...                             progress=False)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    device = module.classifier.weight.device
    width = module.classifier.out_features if what == "logits" else module.config.hidden_size
    out = np.empty((tokens.n_cells, width), dtype=np.float32)
    batches = cell_batches(
        tokens,
        batch_size=batch_size,
        cls_token_id=cls_token_id,
        max_length=int(module.config.max_position_embeddings),
        pad_token_id=pad_token_id(module),
        vocab_size=int(module.config.vocab_size),
    )
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), tqdm(total=tokens.n_cells, unit="cell", disable=not progress) as bar:
            for index, ids, mask in batches:
                ids_t, mask_t = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
                if what == "logits":
                    result = module(input_ids=ids_t, attention_mask=mask_t).logits
                else:
                    result = module.bert(input_ids=ids_t, attention_mask=mask_t).last_hidden_state[:, 0]
                out[index] = result.float().cpu().numpy()
                bar.update(len(index))
    finally:
        module.train(was_training)
    return out
