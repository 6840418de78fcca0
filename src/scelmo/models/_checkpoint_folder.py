"""Model folders written whole or not at all, with a manifest of every file's size and SHA-256.

A folder is written into a temporary sibling, a manifest (``scelmo_manifest.json``: every
file's size and SHA-256) is written last, and the folder is then renamed into place by
:func:`scelmo._atomic.atomic_folder` (an old folder is moved aside first and removed only once
the new one is in place). On loading, a folder written by scelmo must have its manifest and
match it, so nothing is read (let alone unpickled) from a file that changed since it was saved.
Folders not written by scelmo (no manifest and no marker file, e.g. the original LangCell
layout) load as they are. Used by every saved model: :class:`~scelmo.models.LangCell`,
:class:`~scelmo.models.LangCellCE` and the scvi-tools models.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scelmo._atomic import atomic_folder

__all__ = ["MANIFEST", "CheckpointError", "checkpoint_folder", "read_json", "verify_folder", "write_manifest"]


class CheckpointError(ValueError):
    """A saved model folder is damaged, incomplete, or does not match the model built from its configuration.

    Examples
    --------
    >>> from scelmo.models import LangCell
    >>> from scelmo.models.langcell import CheckpointError
    >>> try:  # doctest: +SKIP
    ...     LangCell.from_pretrained("damaged_checkpoint")
    ... except CheckpointError as err:
    ...     print(err)  # names each mismatched tensor with both shapes
    """


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; an unreadable or non-object file raises :class:`CheckpointError` naming it.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for the message (``"cell_bert's configuration"``).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> from scelmo.models._checkpoint_folder import read_json
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "settings.json"
    ...     _ = path.write_text(json.dumps({"format": "x"}))
    ...     read_json(path, "the settings")
    {'format': 'x'}
    """
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} ({what}) is not valid JSON ({_first_line(err)}): the file is truncated or corrupt. "
            "Restore it from the original checkpoint, or save the model again."
        ) from err
    if not isinstance(values, dict):
        raise CheckpointError(f"{path} ({what}) holds a JSON {type(values).__name__}, not an object.")
    return values


#: Written last into every folder scelmo saves: each file's size and SHA-256.
MANIFEST = "scelmo_manifest.json"
_MANIFEST_FORMAT = "scelmo.manifest"
_MANIFEST_VERSION = 1
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[str]:
    """Files under ``folder`` (relative POSIX paths), hidden ones (``.DS_Store``...) and the manifest aside."""
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if (
            path.is_file()
            and not any(piece.startswith(".") for piece in rel.parts)
            and rel.as_posix() != MANIFEST
        ):
            out.append(rel.as_posix())
    return sorted(out)


def write_manifest(folder: Path, *, writer: str, version: int) -> Path:
    """Write ``scelmo_manifest.json`` listing every file of ``folder`` with its size and SHA-256.

    Parameters
    ----------
    folder
        The finished folder (the manifest is the last file written).
    writer, version
        The format that wrote the folder (``"scelmo.langcell"``, 1), recorded in the manifest.

    Returns
    -------
    The manifest's path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.models._checkpoint_folder import write_manifest
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (pathlib.Path(tmp) / "weights.bin").write_bytes(b"abc")
    ...     write_manifest(pathlib.Path(tmp), writer="scelmo.example", version=1).name
    'scelmo_manifest.json'
    """
    files = {
        name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)}
        for name in _files(folder)
    }
    manifest = {
        "format": _MANIFEST_FORMAT,
        "version": _MANIFEST_VERSION,
        "writer": writer,
        "writer_version": int(version),
        "files": files,
    }
    path = folder / MANIFEST
    with path.open("w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def verify_folder(folder: Path, *, marker: str, writer: str) -> bool:
    """Check a checkpoint folder against its manifest; refuse a scelmo folder that has none.

    Parameters
    ----------
    folder
        The checkpoint folder.
    marker
        A file only scelmo writes there (``langcell_config.json``): with it and no manifest the
        folder is an unfinished or damaged save.
    writer
        The expected writer in the manifest (``"scelmo.langcell"``).

    Returns
    -------
    ``True`` if a manifest was checked, ``False`` for a folder not written by scelmo (no
    manifest, no marker: the original layout).

    Raises
    ------
    CheckpointError
        Naming the file that is missing, truncated, changed, unlisted, or the missing manifest.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.models._checkpoint_folder import CheckpointError, checkpoint_folder, verify_folder
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = pathlib.Path(tmp) / "model"
    ...     with checkpoint_folder(folder, overwrite=False, writer="scelmo.example", version=1,
    ...                            replaceable=["settings.json"]) as staging:
    ...         _ = (staging / "settings.json").write_text("{}")
    ...     checked = verify_folder(folder, marker="settings.json", writer="scelmo.example")
    ...     _ = (folder / "settings.json").write_text('{"changed": 1}')
    ...     try:
    ...         verify_folder(folder, marker="settings.json", writer="scelmo.example")
    ...     except CheckpointError as err:
    ...         changed = "has 14 bytes but scelmo_manifest.json says 2" in str(err)
    >>> checked, changed
    (True, True)
    """
    path = folder / MANIFEST
    if not path.is_file():
        if (folder / marker).exists():
            raise CheckpointError(
                f"{folder} was written by scelmo ({marker} is there) but has no {MANIFEST}: the save did not "
                "finish, or files were removed or copied without it. Save the model again (or copy the whole "
                "folder)."
            )
        return False
    manifest = read_json(path, "the checkpoint's manifest")
    if manifest.get("format") != _MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"{path} is not a scelmo manifest (format {manifest.get('format')!r}).")
    if int(manifest.get("version", 0)) > _MANIFEST_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer scelmo (manifest version {manifest['version']}); upgrade scelmo."
        )
    if manifest.get("writer") != writer:
        raise CheckpointError(
            f"{path} says the folder holds a {manifest.get('writer')!r} checkpoint, not {writer!r}: load it with "
            "the matching class."
        )
    listed: dict[str, Any] = manifest["files"]
    for name, entry in sorted(listed.items()):
        file = folder / name
        if not file.is_file():
            raise CheckpointError(
                f"{file} is missing: the checkpoint {folder} is incomplete ({MANIFEST} lists it)."
            )
        size = file.stat().st_size
        if size != int(entry.get("size", -1)):
            raise CheckpointError(
                f"{file} has {size} bytes but {MANIFEST} says {entry.get('size')}: the file is truncated or was "
                "replaced. Restore the checkpoint folder, or save the model again."
            )
        if _sha256(file) != entry.get("sha256"):
            raise CheckpointError(
                f"{file} does not match its SHA-256 in {MANIFEST}: the file is corrupt or was changed. Restore "
                "the checkpoint folder, or save the model again."
            )
    extra = [name for name in _files(folder) if name not in listed]
    if extra:
        raise CheckpointError(
            f"{folder / extra[0]} is not in {MANIFEST}"
            + (f" (nor {len(extra) - 1} more)" if len(extra) > 1 else "")
            + ": files were added to a checkpoint saved by scelmo, which could change what loads. Remove them."
        )
    return True


@contextlib.contextmanager
def checkpoint_folder(
    path: str | os.PathLike[str],
    *,
    overwrite: bool,
    writer: str,
    version: int,
    replaceable: Iterable[str],
) -> Iterator[Path]:
    """Write a checkpoint folder whole or not at all, with its manifest written last.

    The caller writes every file into the yielded (empty, temporary) folder; then
    :func:`write_manifest` runs and :func:`scelmo._atomic.atomic_folder` moves the folder into
    place (an existing one is moved aside first and removed once the new one is in place). On
    any error the temporary folder is removed and ``path`` is left as it was.

    Parameters
    ----------
    path
        The folder to create or replace.
    overwrite
        Replace an existing non-empty folder (only a checkpoint: see ``replaceable``).
    writer, version
        Recorded in the manifest.
    replaceable
        Names (files or folders) of which at least one must be in an existing non-empty folder
        for ``overwrite`` to replace it: a folder holding other things is never deleted.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.models._checkpoint_folder import checkpoint_folder
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     folder = pathlib.Path(tmp) / "model"
    ...     with checkpoint_folder(folder, overwrite=False, writer="scelmo.example", version=1,
    ...                            replaceable=["settings.json"]) as staging:
    ...         _ = (staging / "settings.json").write_text("{}")
    ...     sorted(p.name for p in folder.iterdir())
    ['scelmo_manifest.json', 'settings.json']
    """
    root = Path(os.path.abspath(path))
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder.")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty; pass overwrite=True to replace it.")
        if not any((root / name).exists() for name in replaceable):
            raise FileExistsError(
                f"{root} holds files but no checkpoint (none of {sorted(replaceable)}); overwrite=True "
                "replaces only a checkpoint folder, as a whole. Save into a new or empty folder."
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(root) as staging:
        yield staging
        write_manifest(staging, writer=writer, version=version)
