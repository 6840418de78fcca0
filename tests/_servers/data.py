"""A scelmo data folder shared by the text tests of one session (the gene table is converted once)."""

from __future__ import annotations

from pathlib import Path

from scelmo.text.sources import find_go_annotations


def ambient_go_files() -> tuple[Path, Path] | None:
    """The developer's GO files (``data_dir()/go/``, where scripts/fetch_go_sqlite.sh puts them).

    Call at import time, before any test points ``SCELMO_DATA_DIR`` elsewhere.
    """
    try:
        return find_go_annotations()
    except (OSError, ValueError):
        return None


def shared_data_dir(base: Path, go_files: tuple[Path, Path] | None) -> Path:
    """``base/scelmo-text-data``, with the GO files linked into ``go/`` when there are any."""
    folder = base / "scelmo-text-data"
    (folder / "derived").mkdir(parents=True, exist_ok=True)
    if go_files is not None and not (folder / "go").exists():
        (folder / "go").mkdir()
        for path in go_files:
            (folder / "go" / path.name).symlink_to(path)
    return folder
