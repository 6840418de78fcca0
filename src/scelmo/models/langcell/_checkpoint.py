"""Reading and writing LangCell's five-part checkpoint, with every tensor checked.

The original layout (one folder)::

    cell_bert/      config.json + pytorch_model.bin | model.safetensors   (Hugging Face BertModel)
    text_bert/      config.json + pytorch_model.bin | model.safetensors   (BLIP-style BERT)
    cell_proj.bin   text_proj.bin   ctm_head.bin                          (torch state dicts)

:meth:`LangCell.save` writes the same layout with safetensors files (``cell_proj.safetensors``,
``cell_bert/model.safetensors``, ...), the text tokenizer in ``text_tokenizer/`` and a small
``langcell_config.json``; loading accepts either form. Folders written by scelmo appear whole
or not at all and are checked against their manifest on loading
(:mod:`scelmo.models._checkpoint_folder`). Sizes declared by a ``config.json`` are checked
against the weights before a model is built.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scelmo._logging import logger
from scelmo._optional import import_optional

# The folder helpers moved to a module of their own (they serve every saved model); these names
# stay importable from here.
from scelmo.models._checkpoint_folder import (  # noqa: F401
    MANIFEST,
    CheckpointError,
    _first_line,
    checkpoint_folder,
    read_json,
    verify_folder,
    write_manifest,
)

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module
    from transformers import PreTrainedTokenizerBase

torch = import_optional("torch", "langcell", purpose="LangCell")

#: Keys that may be in a checkpoint but are not weights LangCell uses: position/token-type
#: id buffers, and the BERT pooler (LangCell pools with its own projections instead).
IGNORED_KEYS = re.compile(r"^(embeddings\.(position_ids|token_type_ids)|pooler\.dense\.(weight|bias))$")
#: Prefixes of checkpoints saved from a model with a head (``BertForMaskedLM`` etc.).
_PREFIXES = ("bert.", "model.")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _read_file(path: Path, part: str | None = None) -> dict[str, Tensor]:
    part = part or path.stem
    try:
        if path.suffix == ".safetensors":
            safetensors_torch = import_optional(
                "safetensors.torch", "langcell", purpose="Reading LangCell checkpoints"
            )
            state = safetensors_torch.load_file(str(path), device="cpu")
        else:
            # weights_only: a .bin file is a pickle; only tensors and plain containers are accepted.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (ImportError, MemoryError):
        raise
    except Exception as err:  # safetensors, zipfile and unpickling errors all mean: unreadable
        raise CheckpointError(
            f"LangCell checkpoint part '{part}': {path} cannot be read ({_first_line(err)}). The file is "
            "truncated, corrupt or not a weights file: download or save the checkpoint again."
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict (name -> tensor).")
    return state


def read_state_dict(location: Path, part: str | None = None) -> tuple[dict[str, Tensor], Path]:
    """The state dict of one part: a model folder (``cell_bert/``) or a file stem (``cell_proj``).

    A folder holds ``model.safetensors`` or ``pytorch_model.bin`` (or a sharded index of
    either); a stem is completed with ``.safetensors`` or ``.bin``. Safetensors win. A file
    that cannot be read raises :class:`CheckpointError` naming it and the part.
    """
    part = part or location.name
    if location.is_dir():
        for name in _WEIGHT_FILES:
            if (location / name).is_file():
                return _read_file(location / name, part), location / name
        for name in _INDEX_FILES:
            index = location / name
            if index.is_file():
                weight_map = read_json(index, f"the shard index of '{part}'").get("weight_map")
                if not isinstance(weight_map, dict):
                    raise CheckpointError(f"{index} has no 'weight_map' object: it is not a shard index.")
                state: dict[str, Tensor] = {}
                for shard in sorted(set(map(str, weight_map.values()))):
                    state.update(_read_file(location / shard, part))
                return state, index
        raise FileNotFoundError(
            f"{location} has no weights: expected one of {[*_WEIGHT_FILES, *_INDEX_FILES]}."
        )
    for suffix in (".safetensors", ".bin"):
        path = location.with_name(location.name + suffix)
        if path.is_file():
            return _read_file(path, part), path
    raise FileNotFoundError(
        f"Missing LangCell checkpoint part: neither {location}.safetensors nor {location}.bin exists."
    )


def _strip_prefix(state: dict[str, Tensor], expected: Iterable[str]) -> dict[str, Tensor]:
    expected = set(expected)
    if expected & set(state):
        return state
    for prefix in _PREFIXES:
        if any(key.startswith(prefix) for key in state):
            stripped = {key.removeprefix(prefix): value for key, value in state.items()}
            if expected & set(stripped):
                return stripped
    return state


def _shape(value: Tensor) -> tuple[int, ...]:
    return tuple(value.shape)


def load_checked(module: Module, state: dict[str, Tensor], *, part: str, source: Path | str) -> None:
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


def save_safetensors(module: Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a module's state dict as safetensors (contiguous CPU tensors)."""
    safetensors_torch = import_optional(
        "safetensors.torch", "langcell", purpose="Saving LangCell checkpoints"
    )
    state = {key: value.detach().to("cpu").contiguous() for key, value in module.state_dict().items()}
    safetensors_torch.save_file(state, str(path), metadata={"format": "pt", **(metadata or {})})


def load_text_tokenizer(
    source: str | os.PathLike[str] | PreTrainedTokenizerBase | None,
) -> PreTrainedTokenizerBase | None:
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


# --- sizes declared by a configuration, checked before any allocation -----------------------------

_WORDS = "embeddings.word_embeddings.weight"
_POSITIONS = "embeddings.position_embeddings.weight"
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")


def _declared_sizes(
    config: Mapping[str, Any], config_path: Path | str, cross_attention: bool
) -> dict[str, int]:
    """The sizes a configuration declares; one that is not a positive integer is refused."""
    sizes = {}
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings") + (("encoder_width",) if cross_attention else ()):  # fmt: skip
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"{config_path}: {key}={value!r} is not a positive integer.")
        sizes[key] = value
    return sizes


def _found_sizes(state: Mapping[str, Tensor], cross_attention: bool) -> dict[str, tuple[str, int]]:
    """The sizes the weights' shapes show, each with the sentence that says where it was read."""
    state = _strip_prefix(dict(state), {_WORDS})
    layers = {int(match.group(1)) for key in state if (match := _LAYER.match(key))}
    found: dict[str, tuple[str, int]] = {}
    words = state.get(_WORDS)
    if words is not None and len(_shape(words)) == 2:
        found["vocab_size"] = (f"{_WORDS} has {_shape(words)[0]} rows", _shape(words)[0])
        found["hidden_size"] = (f"{_WORDS} has {_shape(words)[1]} columns", _shape(words)[1])
    positions = state.get(_POSITIONS)
    if positions is not None and len(_shape(positions)) == 2:
        found["max_position_embeddings"] = (
            f"{_POSITIONS} has {_shape(positions)[0]} rows",
            _shape(positions)[0],
        )
    found["num_hidden_layers"] = (f"the weights have {len(layers)} layers (encoder.layer.N)", len(layers))
    inner = state.get("encoder.layer.0.intermediate.dense.weight")
    if inner is not None and len(_shape(inner)) == 2:
        found["intermediate_size"] = (
            f"encoder.layer.0.intermediate.dense.weight has {_shape(inner)[0]} rows",
            _shape(inner)[0],
        )
    cross = state.get("encoder.layer.0.crossattention.self.key.weight")
    if cross_attention and cross is not None and len(_shape(cross)) == 2:
        found["encoder_width"] = (
            f"encoder.layer.0.crossattention.self.key.weight has {_shape(cross)[1]} columns",
            _shape(cross)[1],
        )
    return found


def check_sizes(
    config: Mapping[str, Any],
    state: Mapping[str, Tensor],
    *,
    part: str,
    config_path: Path | str,
    source: Path | str,
    cross_attention: bool = False,
) -> None:
    """Compare the sizes a BERT ``config.json`` declares with the weights' shapes, before building the model.

    A model built from the configuration allocates what the configuration says: a corrupt or
    hostile ``vocab_size`` of billions would try to allocate terabytes before the weights are
    ever compared. The shapes are read from the state dict (already in memory, or the header of
    a safetensors file), so this costs nothing.

    Parameters
    ----------
    config
        The configuration values (``vocab_size``, ``hidden_size``, ``num_hidden_layers``,
        ``max_position_embeddings``, ``intermediate_size``, ``num_attention_heads``, and
        ``encoder_width`` when ``cross_attention``).
    state
        The part's tensors (a ``bert.`` or ``model.`` prefix is allowed).
    part, config_path, source
        The part's name, its configuration file and its weights file, for messages.
    cross_attention
        The part is LangCell's text BERT with cross-attention (checks ``encoder_width``).

    Raises
    ------
    CheckpointError
        Naming the configuration key, its value and the tensor shape it contradicts.
    """
    sizes = _declared_sizes(config, config_path, cross_attention)
    found = _found_sizes(state, cross_attention)
    problems = []
    for key, value in sizes.items():
        if key in found and found[key][1] != value:
            problems.append(f"{key}={value} but {found[key][0]}")
        elif (
            key in ("vocab_size", "hidden_size", "max_position_embeddings", "intermediate_size")
            and key not in found
        ):
            # Without the tensor the size cannot be checked, and the model would be built from it alone.
            tensor = {
                "max_position_embeddings": _POSITIONS,
                "intermediate_size": "encoder.layer.0.intermediate.dense.weight",
            }
            problems.append(
                f"{key}={value} cannot be checked: the weights have no '{tensor.get(key, _WORDS)}'"
            )
    heads = sizes.get("num_attention_heads")
    if heads and "hidden_size" in sizes and sizes["hidden_size"] % heads:
        problems.append(
            f"hidden_size={sizes['hidden_size']} is not a multiple of num_attention_heads={heads}"
        )
    if problems:
        raise CheckpointError(
            f"LangCell checkpoint part '{part}': {config_path} does not describe the weights in {source}: "
            + "; ".join(problems)
            + ". The model is not built (it would allocate what the configuration says). Check that config.json "
            "belongs to the weights next to it, or restore it from the original checkpoint."
        )
