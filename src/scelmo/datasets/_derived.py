"""Safe re-encodings of verified source files (pickles), kept under ``data_dir()/derived/``.

A derived file's name carries the first 16 hex digits of its source's sha256, so a changed
source never reuses an old conversion.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from scelmo._logging import logger

from ._registry import data_dir

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
    """Read the derived file if it exists, else ``build`` it, save it with ``write`` and read it back.

    Reading back makes the first call return exactly what later calls will. If the data
    folder is read-only the converted object is returned without being kept.
    """
    path = derived_path(stem, source_sha256, suffix)
    if path.exists():
        try:
            return read(path)
        except (OSError, ValueError) as err:
            # A half-written or damaged conversion is rebuilt from the verified source.
            logger.warning("rebuilding %s, which could not be read (%s)", path, err)
    obj = build()
    # Keep the suffix last so that writers which infer compression from it still see it.
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(obj, tmp)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        logger.warning("could not keep the converted file %s (%s); it is rebuilt next session", path, err)
        return obj
    logger.info("converted %s to %s", stem, path)
    return read(path)
