"""Reading and writing LangCell's five-part checkpoint, with every tensor checked.

The original layout (one folder)::

    cell_bert/      config.json + pytorch_model.bin | model.safetensors   (Hugging Face BertModel)
    text_bert/      config.json + pytorch_model.bin | model.safetensors   (BLIP-style BERT)
    cell_proj.bin   text_proj.bin   ctm_head.bin                          (torch state dicts)

:meth:`LangCell.save` writes the same layout with safetensors files (``cell_proj.safetensors``,
``cell_bert/model.safetensors``, ...), the text tokenizer in ``text_tokenizer/`` and a small
``langcell_config.json``; loading accepts either form.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..._logging import logger
from ..._optional import import_optional

torch = import_optional("torch", "langcell", purpose="LangCell")

#: Keys that may be in a checkpoint but are not weights LangCell uses: position/token-type
#: id buffers, and the BERT pooler (LangCell pools with its own projections instead).
IGNORED_KEYS = re.compile(r"^(embeddings\.(position_ids|token_type_ids)|pooler\.dense\.(weight|bias))$")
#: Prefixes of checkpoints saved from a model with a head (``BertForMaskedLM`` etc.).
_PREFIXES = ("bert.", "model.")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


class CheckpointError(ValueError):
    """A LangCell checkpoint does not match the model built from its configuration.

    Examples
    --------
    >>> from scelmo.models import LangCell
    >>> from scelmo.models.langcell import CheckpointError
    >>> try:  # doctest: +SKIP
    ...     LangCell.from_pretrained("damaged_checkpoint")
    ... except CheckpointError as err:
    ...     print(err)  # names each mismatched tensor with both shapes
    """


def _read_file(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        safetensors_torch = import_optional(
            "safetensors.torch", "langcell", purpose="Reading LangCell checkpoints"
        )
        return safetensors_torch.load_file(str(path), device="cpu")
    # weights_only: a .bin file is a pickle; only tensors and plain containers are accepted.
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict (name -> tensor).")
    return state


def read_state_dict(location: Path) -> tuple[dict[str, Any], Path]:
    """The state dict of one part: a model folder (``cell_bert/``) or a file stem (``cell_proj``).

    A folder holds ``model.safetensors`` or ``pytorch_model.bin`` (or a sharded index of
    either); a stem is completed with ``.safetensors`` or ``.bin``. Safetensors win.
    """
    if location.is_dir():
        for name in _WEIGHT_FILES:
            if (location / name).is_file():
                return _read_file(location / name), location / name
        for name in _INDEX_FILES:
            index = location / name
            if index.is_file():
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
                state: dict[str, Any] = {}
                for shard in shards:
                    state.update(_read_file(location / shard))
                return state, index
        raise FileNotFoundError(
            f"{location} has no weights: expected one of {[*_WEIGHT_FILES, *_INDEX_FILES]}."
        )
    for suffix in (".safetensors", ".bin"):
        path = location.with_name(location.name + suffix)
        if path.is_file():
            return _read_file(path), path
    raise FileNotFoundError(
        f"Missing LangCell checkpoint part: neither {location}.safetensors nor {location}.bin exists."
    )


def _strip_prefix(state: dict[str, Any], expected: Iterable[str]) -> dict[str, Any]:
    expected = set(expected)
    if expected & set(state):
        return state
    for prefix in _PREFIXES:
        if any(key.startswith(prefix) for key in state):
            stripped = {key.removeprefix(prefix): value for key, value in state.items()}
            if expected & set(stripped):
                return stripped
    return state


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.shape)


def load_checked(module: Any, state: dict[str, Any], *, part: str, source: Path | str) -> None:
    """Load ``state`` into ``module`` after checking every name and shape; raise a clear error otherwise.

    Parameters
    ----------
    module
        The torch module built from the part's configuration.
    state
        The checkpoint's tensors.
    part
        The part's name in messages (``"cell_bert"``, ``"text_proj"``, ...).
    source
        The file the tensors came from, for messages.
    """
    own = module.state_dict()
    state = _strip_prefix(state, own)
    ignored = sorted(key for key in state if key not in own and IGNORED_KEYS.match(key))
    state = {key: value for key, value in state.items() if key not in ignored}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        (key, _shape(state[key]), _shape(own[key]))
        for key in own
        if key in state and _shape(state[key]) != _shape(own[key])
    ]
    problems = []
    if mismatched:
        problems += [
            f"tensor '{part}/{key}' has shape {got} in the checkpoint, but the model built from the "
            f"configuration expects {want}"
            for key, got, want in mismatched
        ]
    if missing:
        problems.append(f"missing tensors: {_listing(missing, part)}")
    if unexpected:
        problems.append(f"unexpected tensors: {_listing(unexpected, part)}")
    if problems:
        hint = (
            " The configuration (config.json) does not describe these weights: check that the folder is an "
            "unmodified LangCell checkpoint and that config.json belongs to the weights next to it."
        )
        raise CheckpointError(
            f"LangCell checkpoint part '{part}' ({source}) does not fit: " + "; ".join(problems) + "." + hint
        )
    module.load_state_dict(state, strict=True)
    if ignored:
        logger.debug("%s: ignored unused checkpoint entries %s", part, ignored)


def _listing(keys: list[str], part: str, limit: int = 8) -> str:
    shown = ", ".join(f"'{part}/{key}'" for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def save_safetensors(module: Any, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a module's state dict as safetensors (contiguous CPU tensors)."""
    safetensors_torch = import_optional(
        "safetensors.torch", "langcell", purpose="Saving LangCell checkpoints"
    )
    state = {key: value.detach().to("cpu").contiguous() for key, value in module.state_dict().items()}
    safetensors_torch.save_file(state, str(path), metadata={"format": "pt", **(metadata or {})})


def load_text_tokenizer(source: Any) -> Any:
    """A BERT WordPiece tokenizer from a folder, a ``vocab.txt`` file, or an existing tokenizer object.

    A folder may hold ``vocab.txt`` (PubMedBERT's, lower-cased) or the files of
    ``save_pretrained`` (``tokenizer.json``).
    """
    if source is None or not isinstance(source, str | os.PathLike):
        return source
    transformers = import_optional("transformers", "langcell", purpose="LangCell's text tokenizer")
    path = Path(source)
    if path.is_dir():
        if not any((path / name).is_file() for name in ("vocab.txt", "tokenizer.json")):
            raise FileNotFoundError(
                f"{path} has neither vocab.txt nor tokenizer.json for the text tokenizer."
            )
        return transformers.BertTokenizerFast.from_pretrained(str(path))
    if path.is_file():
        if path.name == "vocab.txt":
            return transformers.BertTokenizerFast.from_pretrained(str(path.parent))
        # from_pretrained looks for the name vocab.txt (the vocab-file argument of the
        # constructor differs between transformers versions).
        with tempfile.TemporaryDirectory() as folder:
            shutil.copyfile(path, Path(folder) / "vocab.txt")
            return transformers.BertTokenizerFast.from_pretrained(folder)
    raise FileNotFoundError(f"Text tokenizer not found: {path} is neither a folder nor a vocab.txt file.")
