"""The data folder: where it is, and which paths in it scelmo may write to.

Everything scelmo writes there (downloads, extracted members, manifests, converted files, the
user registry) is checked first by :func:`writable`: a path whose real location, once symbolic
links are resolved, is outside the real data folder is refused. The data folder itself may be a
link (``~/.cache/scelmo -> /big/disk/scelmo``); links *inside* it may be read through (a file
placed by hand as a link to a shared copy) but are never written through.
"""

from __future__ import annotations

import os
from pathlib import Path

from scelmo._atomic import remove_stale_temp_files
from scelmo._logging import logger

#: Environment variable that moves the data folder.
ENV_VAR = "SCELMO_DATA_DIR"

# Data folders already cleared of stale temporary files by this process.
_swept: set[str] = set()


def data_dir() -> Path:
    """The folder where scelmo keeps downloaded and converted data.

    ``$SCELMO_DATA_DIR`` if it is set, otherwise the operating system's cache folder for
    scelmo (:func:`pooch.os_cache`). The folder is created if it does not exist.

    Returns
    -------
    The data folder.

    Raises
    ------
    NotADirectoryError
        If the path (or one of its parents) is a file; the message names it and the fix.
    PermissionError
        If the folder cannot be created.

    Examples
    --------
    >>> import scelmo as se
    >>> se.datasets.data_dir().is_dir()
    True

    Set the variable before using scelmo to keep the data elsewhere, e.g. on a shared disk:
    ``export SCELMO_DATA_DIR=/shared/scelmo-data``.
    """
    import pooch

    env = os.environ.get(ENV_VAR)
    folder = Path(env).expanduser() if env else Path(pooch.os_cache("scelmo"))
    where = f"{ENV_VAR}={env}" if env else "the data folder"
    fix = (
        f"set {ENV_VAR} to a folder (it is created if missing)"
        if env
        else f"move that file away, or set {ENV_VAR} to another folder"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(
            f"{where} is not usable as the scelmo data folder: {blocking} is a file, not a folder; {fix}."
        ) from err
    except PermissionError as err:
        raise PermissionError(
            f"Cannot create the scelmo data folder {folder} ({err.strerror}); set {ENV_VAR} to a folder "
            "you can write to."
        ) from err
    return folder


def _escaping_link(root: Path, path: Path) -> tuple[Path, Path] | None:
    """The first symbolic link on ``path`` below ``root`` that leads outside ``root``, and its target."""
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            resolved = current.resolve()
            if not resolved.is_relative_to(root.resolve()):
                return current, resolved
    return None


def writable(path: Path) -> Path:
    """``path`` (inside :func:`data_dir`) if writing there stays inside the data folder.

    Parameters
    ----------
    path
        A path under the data folder, as ``data_dir() / relative``.

    Returns
    -------
    ``path`` unchanged.

    Raises
    ------
    ValueError
        If ``path`` or one of its folders is a symbolic link whose real location is outside
        the data folder; the message names the link and where it points.

    Examples
    --------
    >>> import os, tempfile
    >>> from scelmo.datasets._folder import data_dir, writable
    >>> os.environ["SCELMO_DATA_DIR"] = tempfile.mkdtemp()
    >>> writable(data_dir() / "tables" / "genes.npz").name
    'genes.npz'
    """
    root = data_dir()
    real_root = root.resolve()
    if path.resolve().is_relative_to(real_root):
        return path
    link = _escaping_link(root, path) if path.is_relative_to(root) else None
    if link is None:
        raise ValueError(
            f"Refusing to write {path}: its real location {path.resolve()} is outside the data folder "
            f"{real_root}."
        )
    raise ValueError(
        f"Refusing to write {path}: {link[0]} is a symbolic link to {link[1]}, outside the data folder "
        f"{real_root}. scelmo writes only inside its data folder: remove the link (to use a copy kept "
        "elsewhere, register it with scelmo.datasets.register_local(name, path) instead), or point "
        f"{ENV_VAR} at the folder you want written."
    )


def sweep_stale_temp_files() -> None:
    """Remove the temporary files that killed runs left in the data folder (once per process)."""
    root = data_dir()
    key = str(root.resolve())
    if key in _swept:
        return
    _swept.add(key)
    removed = remove_stale_temp_files(root)
    if removed:
        logger.info(
            "removed %d temporary files left by interrupted runs in %s (e.g. %s)",
            len(removed),
            root,
            removed[0].name,
        )
