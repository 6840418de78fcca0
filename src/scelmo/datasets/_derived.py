"""Safe re-encodings of verified source files (pickles), kept under ``data_dir()/derived/``.

A derived file's name carries the first 16 hex digits of its source's sha256, so a changed
source never reuses an old conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from scelmo._atomic import atomic_write
from scelmo._logging import logger

from ._folder import data_dir, writable

T = TypeVar("T")


def derived_path(stem: str, source_sha256: str, suffix: str) -> Path:
    """Where the conversion of the source with this hash is kept."""
    return data_dir() / "derived" / f"{stem}-{source_sha256[:16]}{suffix}"


def load_derived(
    stem: str,
    source_sha256: str,
    suffix: str,
    *,
    build: Callable[[], T],
    write: Callable[[T, Path], None],
    read: Callable[[Path], T],
) -> T:
    """A safe conversion of a verified source file, made once and kept under ``data_dir()/derived/``.

    Read the derived file if it exists, else ``build`` it, save it with ``write`` and read it
    back. Reading back makes the first call return exactly what later calls will. The file
    appears whole or not at all (:func:`scelmo._atomic.atomic_write`); if it cannot be written
    (a read-only data folder, a full disk) the converted object is returned without being kept.
    A ``derived`` folder that is a link out of the data folder is refused (``ValueError``); a
    damaged derived file is rebuilt.

    Parameters
    ----------
    stem
        Name of the conversion (usually the registry entry it comes from).
    source_sha256
        The sha256 of the verified source (:func:`file_sha256`): its first 16 hex digits are in
        the file name, so a changed source never reuses an old conversion.
    suffix
        File suffix, e.g. ``".tsv.gz"`` or ``".json"``.
    build
        Makes the object from the source (called only when no derived file can be read).
    write
        Writes the object to a path.
    read
        Reads the object from a path.

    Returns
    -------
    What ``read`` returns for the kept file (or ``build``'s object when it could not be kept).

    Examples
    --------
    >>> import json
    >>> from scelmo.datasets import load_derived
    >>> def write(obj, path):
    ...     path.write_text(json.dumps(obj))
    >>> table = load_derived("example", "0" * 64, ".json", build=lambda: {"CD3E": 1}, write=write,
    ...                      read=lambda path: json.loads(path.read_text()))  # doctest: +SKIP
    >>> table  # doctest: +SKIP
    {'CD3E': 1}
    """
    path = derived_path(stem, source_sha256, suffix)
    if path.exists():
        try:
            return read(path)
        except Exception as err:  # noqa: BLE001 - whatever the damage, the source can rebuild it
            # A half-written or damaged conversion (a truncated gzip ends in EOFError, a bad zip in
            # BadZipFile) is rebuilt from the verified source.
            logger.warning("rebuilding %s, which could not be read (%s: %s)", path, type(err).__name__, err)
    obj = build()
    writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name keeps the suffix last, for writers that infer compression from it.
        with atomic_write(path) as tmp:
            write(obj, tmp)
    except OSError as err:
        logger.warning("could not keep the converted file %s (%s); it is rebuilt next session", path, err)
        return obj
    logger.info("converted %s to %s", stem, path)
    return read(path)
