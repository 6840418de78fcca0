"""Saving and loading scelmo's pretrained-model folders: a settings file, Hugging Face parts, a manifest.

:class:`~scelmo.models.LangCell` and :class:`~scelmo.models.LangCellCE` save the same way:
their parts (Hugging Face ``config.json`` + ``model.safetensors`` folders, safetensors heads)
and a small JSON settings file (``{"format": ..., "version": ..., ...}``) go into a folder that
is written whole or not at all and checked against its manifest when read
(:mod:`scelmo.models._checkpoint_folder`). :class:`FolderFormat` holds what differs between
them (names, version, which files mark the folder as theirs); the rest is written once here.
Nothing is unpickled: weights are safetensors, or ``.bin`` files read with
``torch.load(weights_only=True)`` by the model's own reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scelmo._logging import logger

from ._checkpoint_folder import MANIFEST, CheckpointError, checkpoint_folder, read_json, verify_folder

if TYPE_CHECKING:
    import os

    from transformers import PretrainedConfig

__all__ = ["FolderFormat", "hf_config_dict", "write_hf_config"]


@dataclass(frozen=True)
class FolderFormat:
    """What identifies one kind of saved model folder.

    Attributes
    ----------
    writer
        The format name recorded in the settings file and the manifest (``"scelmo.langcell"``).
    version
        The newest version this scelmo writes and reads.
    settings_file
        The JSON settings file only scelmo writes (``"langcell_config.json"``); it also marks a
        folder as scelmo's, so that one without a manifest is refused.
    name
        The class, for messages (``"LangCell"``).
    replaceable
        Names of which at least one must be in an existing folder for ``overwrite`` to replace it.

    Examples
    --------
    >>> from scelmo.models._pretrained import FolderFormat
    >>> fmt = FolderFormat("scelmo.example", 1, "example.json", "Example", ("example.json",))
    >>> fmt.settings({"labels": ["a", "b"]})
    {'format': 'scelmo.example', 'version': 1, 'labels': ['a', 'b']}
    """

    writer: str
    version: int
    settings_file: str
    name: str
    replaceable: tuple[str, ...]

    def settings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The settings to write: ``format`` and ``version`` first, then ``values``.

        Examples
        --------
        >>> from scelmo.models._pretrained import FolderFormat
        >>> FolderFormat("scelmo.example", 2, "example.json", "Example", ()).settings({"seed": 0})
        {'format': 'scelmo.example', 'version': 2, 'seed': 0}
        """
        return {"format": self.writer, "version": self.version, **values}

    def save(
        self,
        path: str | os.PathLike[str],
        write_parts: Callable[[Path], Mapping[str, Any]],
        *,
        overwrite: bool,
    ) -> None:
        r"""Write a folder whole or not at all: the parts, the settings file, then the manifest.

        Parameters
        ----------
        path
            The folder to create (or replace, with ``overwrite``).
        write_parts
            Writes every part into the (new, empty, temporary) folder it is given and returns the
            settings to record.
        overwrite
            Replace an existing folder of this kind as a whole.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from scelmo.models._pretrained import FolderFormat
        >>> fmt = FolderFormat("scelmo.example", 1, "example.json", "Example", ("weights.bin",))
        >>> def write_parts(root):
        ...     _ = (root / "weights.bin").write_bytes(b"\x00")
        ...     return {"labels": ["a", "b"]}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     fmt.save(pathlib.Path(tmp) / "model", write_parts, overwrite=False)
        ...     fmt.read_settings(pathlib.Path(tmp) / "model", required=True)["labels"]
        ['a', 'b']
        """
        with checkpoint_folder(
            path,
            overwrite=overwrite,
            writer=self.writer,
            version=self.version,
            replaceable=(*self.replaceable, self.settings_file, MANIFEST),
        ) as root:
            values = write_parts(root)
            text = json.dumps(self.settings(values), indent=2, default=str)
            (root / self.settings_file).write_text(text, encoding="utf-8")
        logger.info("saved %s to %s", self.name, Path(path))

    def read_settings(self, root: Path, *, required: bool) -> dict[str, Any]:
        """Check the folder against its manifest and read the settings file.

        Parameters
        ----------
        root
            The folder.
        required
            The folder must have been written by scelmo. Otherwise a folder with neither
            manifest nor settings file (an original checkpoint) gives ``{}``.

        Returns
        -------
        The settings (``{}`` for an original checkpoint).

        Raises
        ------
        FileNotFoundError
            If ``root`` is not a folder, or (``required``) holds no folder of this kind.
        scelmo.models.langcell.CheckpointError
            If a file differs from the manifest, or the settings are of another format or a
            newer version.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from scelmo.models._pretrained import FolderFormat
        >>> fmt = FolderFormat("scelmo.example", 1, "example.json", "Example", ())
        >>> with tempfile.TemporaryDirectory() as tmp:  # a folder not written by scelmo
        ...     fmt.read_settings(pathlib.Path(tmp), required=False)
        {}
        """
        if not root.is_dir():
            raise FileNotFoundError(f"{self.name} checkpoint folder not found: {root}")
        path = root / self.settings_file
        if not verify_folder(root, marker=self.settings_file, writer=self.writer):
            if required:
                raise FileNotFoundError(
                    f"{root / MANIFEST} and {path} are missing: {root} was not written by {self.name}.save."
                )
            if not path.is_file():
                return {}
        values = read_json(path, f"scelmo's {self.name} settings")
        if values.get("format") != self.writer or int(values.get("version", 0)) > self.version:
            raise CheckpointError(
                f"{path} is not a {self.name} settings file this scelmo can read (format "
                f"{values.get('format')!r}, version {values.get('version')!r}); upgrade scelmo."
            )
        return values


def hf_config_dict(config: PretrainedConfig | Mapping[str, Any]) -> dict[str, Any]:
    """A Hugging Face configuration as a plain dict, without the attention choice of this session.

    The attention implementation (``sdpa``/``eager``) is chosen when a model is built, not saved
    with it: the same folder loads with either.

    Examples
    --------
    >>> from scelmo.models._pretrained import hf_config_dict
    >>> hf_config_dict({"hidden_size": 8, "_attn_implementation_autoset": True})
    {'hidden_size': 8}
    """
    values = config if isinstance(config, Mapping) else config.to_dict()
    return {key: value for key, value in dict(values).items() if not key.startswith("_attn_implementation")}


def write_hf_config(config: PretrainedConfig | Mapping[str, Any], folder: Path) -> None:
    """Write ``folder/config.json`` (created), keys sorted so that equal models give equal files.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.models._pretrained import write_hf_config
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_hf_config({"b": 1, "a": 2}, pathlib.Path(tmp) / "part")
    ...     (pathlib.Path(tmp) / "part" / "config.json").read_text().splitlines()[1]
    '  "a": 2,'
    """
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(hf_config_dict(config), indent=2, sort_keys=True)
    (folder / "config.json").write_text(text, encoding="utf-8")
