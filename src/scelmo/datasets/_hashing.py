"""SHA-256 (and MD5) digests of files and folders, remembered while the file is unchanged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20

# Hashing a large checkpoint on every `fetch` would cost seconds, so digests are remembered per
# (path, size, mtime, inode): any rewrite of the file changes the key and forces a new hash.
_seen: dict[tuple, str] = {}


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _digest_file(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of a file's bytes, remembered while the file is unchanged.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    64 lower-case hex digits.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from scelmo.datasets import file_sha256
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "empty.txt"
    ...     _ = path.write_bytes(b"")
    ...     file_sha256(path)[:16]
    'e3b0c44298fc1c14'
    """
    path = Path(path).resolve()
    key = ("file", str(path), _stat_key(path))
    if key not in _seen:
        _seen[key] = _digest_file(path)
    return _seen[key]


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 digest of a file's bytes: only for hosts that publish nothing else (Zenodo)."""
    path = Path(path).resolve()
    key = ("md5", str(path), _stat_key(path))
    if key not in _seen:
        _seen[key] = _digest_file(path, "md5")
    return _seen[key]


def _folder_files(folder: Path) -> list[tuple[str, Path]]:
    files = [(p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file()]
    return sorted(files)


def folder_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 over a folder's files: sorted relative paths, each with its content digest.

    Each line ``relative/path NUL file-digest LF`` goes into the outer digest, so renaming,
    adding, removing or editing any file changes the result, while the folder's own location
    and timestamps do not.
    """
    folder = Path(path).resolve()
    files = _folder_files(folder)
    if not files:
        raise ValueError(f"The folder {folder} is empty: there is nothing to hash.")
    key = ("folder", str(folder), tuple((rel, _stat_key(p)) for rel, p in files))
    if key not in _seen:
        digest = hashlib.sha256()
        for rel, file in files:
            digest.update(rel.encode("utf-8") + b"\0" + file_sha256(file).encode("ascii") + b"\n")
        _seen[key] = digest.hexdigest()
    return _seen[key]


def path_sha256(path: str | os.PathLike[str]) -> str:
    """:func:`folder_sha256` for a folder, :func:`file_sha256` for a file."""
    path = Path(path)
    return folder_sha256(path) if path.is_dir() else file_sha256(path)


def remember_sha256(path: str | os.PathLike[str], digest: str) -> None:
    """Record the digest of a file just written from bytes that were hashed on the way."""
    path = Path(path).resolve()
    _seen[("file", str(path), _stat_key(path))] = digest
