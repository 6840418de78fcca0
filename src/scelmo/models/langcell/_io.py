"""Reading and writing a LangCell checkpoint folder (the original five-part layout, or scelmo's).

Reading builds every part from its configuration only after the sizes that configuration
declares were checked against the weights' shapes, and loads every tensor by name and shape
(:mod:`scelmo.models.langcell._checkpoint`). A folder written by scelmo is checked against its
manifest first (:class:`scelmo.models._pretrained.FolderFormat`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scelmo._optional import import_optional
from scelmo.models._checkpoint_folder import CheckpointError, read_json
from scelmo.models._pretrained import FolderFormat, hf_config_dict, write_hf_config

from ._checkpoint import check_sizes, load_checked, read_state_dict, save_safetensors
from ._config import (
    CELL_BERT_DIR,
    HEADS,
    LANGCELL_CONFIG,
    TEXT_BERT_DIR,
    TEXT_TOKENIZER_DIR,
    TextBertConfig,
)
from ._network import build_cell_bert
from ._text_bert import TextBert

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Linear
    from transformers import BertConfig, BertModel

    from ._network import LangCellNetwork

torch = import_optional("torch", "langcell", purpose="LangCell")
transformers = import_optional("transformers", "langcell", purpose="LangCell")

#: How :meth:`scelmo.models.LangCell.save` folders are recognised and versioned.
LANGCELL_FOLDER = FolderFormat(
    writer="scelmo.langcell",
    version=1,
    settings_file=LANGCELL_CONFIG,
    name="LangCell",
    replaceable=(CELL_BERT_DIR, TEXT_BERT_DIR),
)

States = dict[str, tuple[dict[str, "Tensor"], Path]]


@dataclass
class LangCellParts:
    """The five modules of a checkpoint, built and loaded, and the tokenizer folder found next to them.

    Examples
    --------
    >>> from scelmo.models.langcell._io import read_parts
    >>> parts = read_parts(Path("path/to/langcell"), "sdpa")  # doctest: +SKIP
    >>> parts.cell_proj.out_features  # doctest: +SKIP
    256
    """

    cell_bert: BertModel
    text_bert: TextBert
    cell_proj: Linear
    text_proj: Linear
    ctm_head: Linear
    text_tokenizer: Path | None


def _configs(root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two encoders' ``config.json`` values; a missing one means the folder is no checkpoint."""
    for part in (CELL_BERT_DIR, TEXT_BERT_DIR):
        if not (root / part / "config.json").is_file():
            raise FileNotFoundError(
                f"{root / part / 'config.json'} is missing: {root} is not a LangCell checkpoint."
            )
    cell_values = read_json(root / CELL_BERT_DIR / "config.json", "cell_bert's configuration")
    text_values = read_json(root / TEXT_BERT_DIR / "config.json", "text_bert's configuration")
    return cell_values, text_values


def _encoders(
    root: Path,
    configs: tuple[dict[str, Any], dict[str, Any]],
    states: States,
    attn_implementation: str | None,
) -> tuple[BertModel, TextBert]:
    """Both encoders, their declared sizes checked against the weights before they are built."""
    cell_values, text_values = configs
    cell_path, text_path = root / CELL_BERT_DIR / "config.json", root / TEXT_BERT_DIR / "config.json"
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
        cell_cfg: BertConfig = transformers.BertConfig.from_dict(hf_config_dict(cell_values))
        text_cfg = TextBertConfig.from_dict(text_values)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{cell_path} or {text_path} is not a valid BERT configuration: {err}") from err
    cell_bert = build_cell_bert(cell_cfg, attn_implementation)
    text_bert = TextBert(text_cfg)
    for part, module in ((CELL_BERT_DIR, cell_bert), (TEXT_BERT_DIR, text_bert)):
        state, source = states.pop(part)
        load_checked(module, state, part=part, source=source)
        del state
    return cell_bert, text_bert


def _heads(states: States, cell_hidden: int, text_hidden: int) -> dict[str, Linear]:
    """``cell_proj``, ``text_proj`` and ``ctm_head``; the projection width is read from the weights."""
    proj_state, proj_source = states["cell_proj"]
    if "weight" not in proj_state or getattr(proj_state["weight"], "ndim", 0) != 2:
        raise CheckpointError(f"{proj_source} has no 2-d 'weight': it is not a Linear layer's state dict.")
    embed_dim = int(proj_state["weight"].shape[0])  # 256 for the released model
    heads = {
        "cell_proj": torch.nn.Linear(cell_hidden, embed_dim),
        "text_proj": torch.nn.Linear(text_hidden, embed_dim),
        "ctm_head": torch.nn.Linear(text_hidden, 2),
    }
    for head, module in heads.items():
        state, source = states[head]
        load_checked(module, state, part=head, source=source)
    return heads


def read_parts(root: Path, attn_implementation: str | None) -> LangCellParts:
    """Build and load the five parts of the checkpoint folder ``root`` (already checked against its manifest).

    Parameters
    ----------
    root
        The folder.
    attn_implementation
        Attention of the cell encoder (``"sdpa"``, ``"eager"``).

    Returns
    -------
    The parts, and ``root/text_tokenizer`` (else ``root/text_bert``) when it holds a vocabulary.

    Raises
    ------
    FileNotFoundError
        If a part is missing.
    scelmo.models.langcell.CheckpointError
        If a tensor is missing, unexpected or of the wrong shape, or a configuration is invalid.

    Examples
    --------
    >>> from scelmo.models.langcell._io import read_parts
    >>> parts = read_parts(Path("path/to/langcell"), attn_implementation="eager")  # doctest: +SKIP
    """
    configs = _configs(root)
    # The weights are read first: the sizes the configurations declare are checked against
    # their shapes before anything of those sizes is allocated.
    states = {part: read_state_dict(root / part) for part in (CELL_BERT_DIR, TEXT_BERT_DIR, *HEADS)}
    cell_bert, text_bert = _encoders(root, configs, states, attn_implementation)
    heads = _heads(states, cell_bert.config.hidden_size, text_bert.config.hidden_size)
    tokenizer = None
    for candidate in (root / TEXT_TOKENIZER_DIR, root / TEXT_BERT_DIR):
        if (candidate / "vocab.txt").is_file() or (candidate / "tokenizer.json").is_file():
            tokenizer = candidate
            break
    return LangCellParts(cell_bert, text_bert, **heads, text_tokenizer=tokenizer)


def write_parts(model: LangCellNetwork, root: Path) -> dict[str, Any]:
    """Write every part of ``model`` into the (new, empty) folder ``root``; return the settings to record.

    Parameters
    ----------
    model
        The model.
    root
        The folder (the temporary one of :meth:`scelmo.models._pretrained.FolderFormat.save`).

    Returns
    -------
    ``cls_token_id``, ``embed_dim``, ``text_max_length`` and, after few-shot training, the classes.

    Examples
    --------
    >>> from scelmo.models.langcell._io import LANGCELL_FOLDER, write_parts
    >>> LANGCELL_FOLDER.save("my_langcell", lambda root: write_parts(model, root), overwrite=False)  # doctest: +SKIP
    """
    write_hf_config(model.cell_bert.config, root / CELL_BERT_DIR)
    save_safetensors(model.cell_bert, root / CELL_BERT_DIR / "model.safetensors")
    (root / TEXT_BERT_DIR).mkdir(parents=True, exist_ok=True)
    text_config = json.dumps(model.text_bert.config.to_dict(), indent=2)
    (root / TEXT_BERT_DIR / "config.json").write_text(text_config, encoding="utf-8")
    save_safetensors(model.text_bert, root / TEXT_BERT_DIR / "model.safetensors")
    for head in HEADS:
        save_safetensors(getattr(model, head), root / f"{head}.safetensors")
    if model.text_tokenizer is not None:
        model.text_tokenizer.save_pretrained(str(root / TEXT_TOKENIZER_DIR))
    settings: dict[str, Any] = {
        "cls_token_id": model.cls_token_id,
        "embed_dim": model.embed_dim,
        "text_max_length": model.text_max_length,
    }
    if model.classes_ is not None and model.class_texts_ is not None:
        settings["classes"] = list(model.classes_)
        settings["class_texts"] = list(model.class_texts_)
    return settings
