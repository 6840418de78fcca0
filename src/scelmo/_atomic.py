"""Files and folders that appear whole or not at all.

Every file scelmo keeps (gene tables, downloads, converted files, manifests, registries) is
written the same way: to a temporary file in the destination's own folder, flushed to the disk
(``fsync``), then moved over the destination with :func:`os.replace`, which is atomic within one
file system. A reader therefore sees the old file or the new one, never a mixture; a write that
fails (a full disk, an exception, Ctrl-C) leaves the old file untouched and removes its
temporary file.

Use :func:`atomic_write` when the writer wants a path (``numpy.savez``, a downloader,
``DataFrame.to_csv``), :func:`atomic_open` when it wants an open file, and :func:`atomic_folder`
for a folder of files (a model checkpoint).

Temporary files are named ``.tmp-<pid>@<host>-<random>-<name>`` (``<host>``: 8 hex digits
of a hash of the machine's name), so that a later run can tell which ones were left by a
process that is gone (:func:`remove_stale_temp_files`). A process killed with SIGKILL, or a
machine losing power, cannot clean up after itself; the next run does. While a long write runs
(a download), :func:`remove_temp_files_on_sigterm` removes the process's temporary files when
it is asked to stop with SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: Prefix of every temporary file or folder written by this module (hidden on POSIX).
TEMP_PREFIX = ".tmp-"
#: A temporary file nobody has written to for this long (seconds) is abandoned, whoever made it.
STALE_AFTER = 3600.0
#: Exit status of a process stopped by SIGTERM (128 + 15, as a shell reports it).
EXIT_SIGTERM = 143

_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
_OWNER = re.compile(r"^\.tmp-(?P<pid>\d+)@(?P<host>[0-9a-f]{8})-")
# Temporary paths this process is writing now: what the SIGTERM handler removes.
_live: set[Path] = set()
_live_lock = threading.Lock()


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary path beside ``path``; its name ends with ``path``'s name.

    Keeping the destination's name last keeps its suffix, for writers that infer the format
    from it (``numpy.savez`` adds ``.npz`` to a name without it, pandas picks compression).

    Examples
    --------
    >>> from scelmo._atomic import temp_path
    >>> temp_path("tables/genes.npz").name.endswith("-genes.npz")
    True
    """
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}@{_HOST}-{uuid.uuid4().hex[:12]}-{path.name}")


def _fsync_file(path: Path) -> None:
    # Windows flushes only handles opened for writing; a writer may have made the file read-only.
    try:
        fd = os.open(path, os.O_RDWR)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; folders cannot be opened on Windows, so skip there."""
    if sys.platform == "win32":
        return
    # Some file systems (network mounts) cannot open or sync folders; the rename itself is done,
    # so a failure here must not report the write as failed.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _tracked(tmp: Path) -> Iterator[None]:
    with _live_lock:
        _live.add(tmp)
    try:
        yield
    except BaseException:
        _remove(tmp)
        raise
    finally:
        with _live_lock:
            _live.discard(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file through a temporary path, moved over ``path`` only if the block succeeds.

    The block writes the whole file to the yielded path (in ``path``'s folder, which must
    exist). When the block ends normally the file is flushed to the disk and replaces ``path``
    in one step; when it raises (anything, ``KeyboardInterrupt`` included) the temporary file
    is removed, ``path`` is left as it was, and the exception propagates. Raise inside the
    block to discard what was written (a download whose hash is wrong).

    Parameters
    ----------
    path
        The destination. An existing file there is replaced; an existing symbolic link is
        replaced by the file (the file it pointed at is not touched).

    Yields
    ------
    The temporary path to write to.

    Raises
    ------
    FileNotFoundError
        If the block wrote nothing at the yielded path.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from scelmo._atomic import atomic_write
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npz")
    >>> with atomic_write(path) as tmp:
    ...     np.savez(tmp, x=np.arange(3))
    >>> np.load(path)["x"].tolist()
    [0, 1, 2]
    """
    path = Path(path)
    tmp = temp_path(path)
    with _tracked(tmp):
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"Nothing was written to the temporary file {tmp} for {path}.")
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """:func:`atomic_write`, yielding the temporary file opened with ``open(tmp, mode, **kwargs)``.

    Parameters
    ----------
    path
        The destination.
    mode
        A writing mode: ``"wb"`` or ``"w"`` (then pass ``encoding=``).
    **kwargs
        Passed to :func:`open`.

    Yields
    ------
    The open temporary file; it is flushed, synced and closed before it replaces ``path``.

    Examples
    --------
    >>> import os, tempfile
    >>> from scelmo._atomic import atomic_open
    >>> path = os.path.join(tempfile.mkdtemp(), "state.json")
    >>> with atomic_open(path, "w", encoding="utf-8") as handle:
    ...     _ = handle.write('{"entries": {}}')
    >>> open(path).read()
    '{"entries": {}}'
    """
    if not mode.startswith(("w", "x")):
        raise ValueError(f"atomic_open writes a new file: use mode 'w' or 'wb', not {mode!r}.")
    with atomic_write(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a folder through a temporary folder, moved to ``path`` only if the block succeeds.

    The block fills the yielded (empty) folder. When it ends normally every file in it is
    synced and the folder is renamed to ``path``; when it raises, the temporary folder is
    removed and ``path`` is left as it was.

    An existing folder at ``path`` is replaced in two renames (the old one is moved aside, the
    new one moved in, then the old one deleted): no reader sees a half-written folder, but
    between the two renames ``path`` does not exist, and if the process dies right then the old
    folder stays beside it as ``.tmp-<pid>@<host>-...-<name>`` until
    :func:`remove_stale_temp_files` removes it.

    Parameters
    ----------
    path
        The destination folder. Its parent must exist.

    Yields
    ------
    The temporary folder to fill.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> from scelmo._atomic import atomic_folder
    >>> path = Path(tempfile.mkdtemp()) / "checkpoint"
    >>> with atomic_folder(path) as tmp:
    ...     _ = (tmp / "weights.bin").write_bytes(b"weights")
    >>> sorted(p.name for p in path.iterdir())
    ['weights.bin']
    """
    path = Path(path)
    tmp = temp_path(path)
    with _tracked(tmp):
        tmp.mkdir()
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                _fsync_file(Path(folder) / name)
            _fsync_folder(Path(folder))
        old = None
        if path.exists() or path.is_symlink():
            old = temp_path(path)
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
            raise
        _fsync_folder(path.parent)
        if old is not None:
            _remove(old)


# --- temporary files left behind ---------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def is_stale(
    path: str | os.PathLike[str], *, now: float | None = None, older_than: float = STALE_AFTER
) -> bool:
    """Whether the temporary file or folder ``path`` was abandoned by its writer.

    It is when it was made on this machine by a process that no longer runs, or when nothing
    has modified it for ``older_than`` seconds (a download in progress writes every few
    seconds; this also covers files made on another machine sharing the folder, and the
    ``.tmp-<uuid>-`` files of scelmo versions that did not record their writer). A file of this
    process is never stale. Process ids are not checked on Windows, where probing a process
    is not side-effect free; the age rule applies there.

    Examples
    --------
    >>> import os, tempfile
    >>> from scelmo._atomic import is_stale, temp_path
    >>> path = temp_path(os.path.join(tempfile.mkdtemp(), "a.bin"))
    >>> _ = path.write_bytes(b"")
    >>> is_stale(path)
    False
    """
    path = Path(path)
    try:
        modified = path.lstat().st_mtime
    except OSError:  # gone already, or not ours to look at
        return False
    owner = _OWNER.match(path.name)
    if owner is not None and owner["host"] == _HOST:
        pid = int(owner["pid"])
        if pid == os.getpid():
            with _live_lock:
                if path in _live:
                    return False
        elif sys.platform != "win32" and not _pid_alive(pid):
            return True
    now = time.time() if now is None else now
    return now - modified > older_than


def remove_stale_temp_files(folder: str | os.PathLike[str], *, older_than: float = STALE_AFTER) -> list[Path]:
    """Delete the abandoned temporary files and folders (see :func:`is_stale`) under ``folder``.

    Symbolic links are not followed: only what is inside ``folder`` is looked at.

    Parameters
    ----------
    folder
        Where to look, recursively.
    older_than
        Seconds without modification after which any temporary file is abandoned.

    Returns
    -------
    The paths removed.

    Examples
    --------
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> from scelmo._atomic import remove_stale_temp_files
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / ".tmp-0123abcd-table.bin").write_bytes(b"half")
    >>> os.utime(folder / ".tmp-0123abcd-table.bin", (0, 0))
    >>> [p.name for p in remove_stale_temp_files(folder)]
    ['.tmp-0123abcd-table.bin']
    """
    removed = []
    now = time.time()
    for parent, folders, files in os.walk(folder):
        for name in [*files, *folders]:
            if not name.startswith(TEMP_PREFIX):
                continue
            path = Path(parent) / name
            if is_stale(path, now=now, older_than=older_than):
                _remove(path)
                removed.append(path)
        folders[:] = [name for name in folders if not name.startswith(TEMP_PREFIX)]
    return removed


# --- SIGTERM ------------------------------------------------------------------------------------


def _remove_live_temp_files() -> None:
    with _live_lock:
        paths = list(_live)
    for path in paths:
        _remove(path)


def _on_sigterm(signum: int, frame: object) -> None:
    _remove_live_temp_files()
    # SystemExit (not os._exit) so that `finally` blocks and atexit handlers still run.
    raise SystemExit(EXIT_SIGTERM)


@contextlib.contextmanager
def remove_temp_files_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM removes this process's temporary files and exits with 143.

    Without it, SIGTERM's default action ends the process at once and leaves a partial
    ``.tmp-...`` file behind. The handler is installed only where SIGTERM would have had its
    default action, and only in the main thread (Python runs signal handlers there); an
    application's own handler, or an ignored SIGTERM, is left alone (its temporary files are
    still removed when the handler raises). The previous handler is restored when the block
    ends.

    Examples
    --------
    >>> from scelmo._atomic import remove_temp_files_on_sigterm
    >>> with remove_temp_files_on_sigterm():
    ...     pass  # a long download
    """
    sigterm = getattr(signal, "SIGTERM", None)
    if sigterm is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(sigterm)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(sigterm, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(sigterm, previous)
