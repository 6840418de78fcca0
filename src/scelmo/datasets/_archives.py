"""Members of hash-verified zip archives: extracted one by one, atomically, and remembered.

Some hosts publish only a zip archive and its md5 (Zenodo). The registry verifies the archive,
then extracts the members an entry names into the data folder, and writes the sha256 of every
extracted member into a manifest (``data_dir()/extracted/<archive entry>.json``) together with
the archive hash that was verified. A member is trusted (for example unpickled without
``trusted=True``) only while its bytes still have the recorded sha256 and the record was made
from an archive whose hash is the registry's current one.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

from scelmo._atomic import atomic_open, atomic_write
from scelmo._logging import logger

from ._hashing import remember_sha256

#: Folder of resource-fork copies that macOS adds to zip archives; never a member we want.
MACOSX = "__MACOSX/"
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_member_name(member: str, *, where: str) -> str:
    """``member`` if it is a plain relative path inside an archive, else a ``ValueError``.

    Names that are absolute, carry a drive letter or backslashes, or have empty, ``.`` or
    ``..`` parts could point outside the folder a member is extracted to ("zip slip"), and
    ``__MACOSX/`` entries are macOS metadata: all are refused.
    """
    parts = member.split("/")
    unsafe = (
        not member
        or member.startswith("/")
        or "\\" in member
        or _DRIVE.match(member) is not None
        or any(part in ("", ".", "..") for part in parts)
    )
    if unsafe:
        raise ValueError(
            f"Refusing the archive member {member!r} ({where}): a member must be a relative path with "
            "'/' separators and no empty, '.' or '..' parts, so that it cannot point outside the data folder."
        )
    if member.startswith(MACOSX):
        raise ValueError(
            f"Refusing the archive member {member!r} ({where}): {MACOSX} entries are macOS metadata."
        )
    return member


def _find(archive: zipfile.ZipFile, member: str, path: Path) -> zipfile.ZipInfo:
    infos = [info for info in archive.infolist() if not info.filename.startswith(MACOSX)]
    by_name = {info.filename: info for info in infos}
    info = by_name.get(member)
    if info is None and "/" not in member:
        # A bare file name (the registry does not know the archive's folder) matches the one
        # entry of that name, wherever it is.
        same = [i for i in infos if not i.is_dir() and i.filename.rstrip("/").rsplit("/", 1)[-1] == member]
        if len(same) > 1:
            raise ValueError(
                f"The archive {path} holds several entries named {member!r}: "
                f"{[i.filename for i in same]}; register the member by its full path."
            )
        info = same[0] if same else None
    if info is None:
        listed = [i.filename for i in infos if not i.is_dir()]
        raise ValueError(
            f"The archive {path} has no member {member!r}; it holds {listed[:10]}"
            f"{' ...' if len(listed) > 10 else ''}. The registry entry names the wrong member, or the "
            "archive is another version."
        )
    check_member_name(info.filename, where=f"an entry of {path}")
    if info.is_dir() or stat.S_ISLNK(info.external_attr >> 16):
        raise ValueError(f"The archive member {info.filename!r} of {path} is not a regular file.")
    return info


def extract_member(archive_path: Path, member: str, target: Path) -> tuple[str, int, str]:
    """Extract one member of a zip archive to ``target``, atomically.

    The bytes go to a temporary file beside ``target`` and are moved into place only once
    the whole member was read, its CRC checked by :mod:`zipfile`, its size confirmed and the
    file synced to the disk (:func:`scelmo._atomic.atomic_write`), so a half-extracted member is
    never where it would be found.

    Parameters
    ----------
    archive_path
        The zip archive (already verified by hash).
    member
        The member's path inside the archive, or a bare file name matching exactly one entry
        outside ``__MACOSX/``.
    target
        Where the member is written (the registry entry's ``filename`` in the data folder).

    Returns
    -------
    The member's sha256, its size in bytes, and its name in the archive.

    Examples
    --------
    >>> import os, tempfile, zipfile
    >>> from pathlib import Path
    >>> from scelmo.datasets._archives import extract_member
    >>> folder = Path(tempfile.mkdtemp())
    >>> with zipfile.ZipFile(folder / "a.zip", "w") as archive:
    ...     archive.writestr("tables/genes.pickle.", b"bytes")
    >>> extract_member(folder / "a.zip", "tables/genes.pickle.", folder / "out" / "genes.pickle.")[1:]
    (5, 'tables/genes.pickle.')
    """
    digest = hashlib.sha256()
    size = 0
    try:
        with zipfile.ZipFile(archive_path) as archive:
            info = _find(archive, member, archive_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(target) as tmp:
                with archive.open(info) as source, open(tmp, "wb") as out:
                    for chunk in iter(lambda: source.read(_CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                if size != info.file_size:
                    raise ValueError(
                        f"The member {info.filename!r} of {archive_path} gave {size} bytes, not the "
                        f"{info.file_size} its archive entry declares."
                    )
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError) as err:
        # RuntimeError: an encrypted member; NotImplementedError: an unsupported compression.
        raise ValueError(
            f"Could not extract {member!r} from {archive_path} ({type(err).__name__}: {err}). The archive "
            "is damaged or not a plain zip archive: delete it and fetch again."
        ) from err
    except OSError as err:
        # A full disk, most likely: say where, and that nothing half-written was kept.
        raise OSError(
            err.errno,
            f"Could not extract {member!r} from {archive_path} to {target} ({err.strerror or err}); nothing "
            "was kept. Free some disk space (or move the data folder with SCELMO_DATA_DIR) and fetch again.",
        ) from err
    sha256 = digest.hexdigest()
    remember_sha256(target, sha256)
    return sha256, size, info.filename


# --- the manifest of extracted members --------------------------------------------------------


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, or an empty one when it is absent or unreadable."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError:
        logger.warning("the manifest %s is not valid JSON: its members will be extracted again", path)
        return {}
    return state if isinstance(state, dict) else {}


def recorded_member(path: Path, filename: str, *, verified_by: str | None) -> dict[str, Any] | None:
    """The record of the member extracted to ``filename``, if made from the archive ``verified_by``.

    ``verified_by`` is the archive hash that was checked (``"md5:..."``, ``"sha256:..."``), or
    ``None`` for an archive without a registered hash; a record made under another hash (an
    older version of the archive) does not count.
    """
    state = read_manifest(path)
    if state.get("verified_by") != verified_by:
        return None
    members = state.get("members")
    record = members.get(filename) if isinstance(members, dict) else None
    return record if isinstance(record, dict) and "sha256" in record else None


def record_member(
    path: Path,
    filename: str,
    *,
    archive: str,
    verified_by: str | None,
    archive_sha256: str,
    record: dict[str, Any],
) -> None:
    """Add the record of one extracted member to the manifest (written whole, synced, then moved in place)."""
    state = read_manifest(path)
    stale = state.get("verified_by") != verified_by or state.get("archive_sha256") != archive_sha256
    if stale or not isinstance(state.get("members"), dict):
        state = {}
    state.update({"archive": archive, "verified_by": verified_by, "archive_sha256": archive_sha256})
    state.setdefault("members", {})[filename] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
