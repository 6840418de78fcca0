"""Files of the command line: checked inputs, guarded outputs, atomic writes, h5ad and text lists.

An output is written through :func:`scelmo._atomic.atomic_write`: to a hidden temporary file in
its destination folder, synced to the disk and renamed over the destination only once complete
(``os.replace``, atomic on one file system), so a failed or interrupted job leaves neither a
partial output nor a touched input behind. SIGTERM during the write removes the temporary file
(exit code 143); one left by a process killed with SIGKILL is removed by the next command that
writes to the same folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scelmo._atomic import TEMP_PREFIX, atomic_write, is_stale, remove_temp_files_on_sigterm

from ._runtime import CLIError, one_line

if TYPE_CHECKING:
    from anndata import AnnData

    from scelmo.gene_embeddings import GeneEmbeddings

__all__ = [
    "atomic_path",
    "check_output",
    "existing_file",
    "is_hdf5",
    "read_h5ad",
    "read_text_lines",
    "remove_stale_outputs",
    "write_h5ad",
    "write_table",
]

#: The 8-byte signature of an HDF5 file (an h5ad is one).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Formats people pass by mistake, and what to do with them.
_CONVERT = {
    ".csv": "sc.read_csv",
    ".tsv": "sc.read_text",
    ".txt": "sc.read_text",
    ".mtx": "sc.read_10x_mtx",
    ".loom": "sc.read_loom",
    ".h5": "sc.read_10x_h5",
    ".zarr": "anndata.read_zarr",
}


def existing_file(path: str | os.PathLike, what: str = "input") -> Path:
    """``path`` as a :class:`~pathlib.Path`, checked to be an existing file.

    Parameters
    ----------
    path
        The file given on the command line.
    what
        What the file is, for the message (``"input"``, ``"reference"``, ...).

    Returns
    -------
    The path.

    Raises
    ------
    CLIError
        When nothing is there, or a folder is.
    """
    file = Path(path)
    if not file.exists():
        raise CLIError(f"{what} file {file} does not exist")
    if file.is_dir():
        raise CLIError(f"{what} {file} is a folder, not a file")
    return file


def is_hdf5(path: Path) -> bool:
    """Whether ``path`` starts with the HDF5 signature (at byte 0, or after a user block of 512 * 2^k bytes).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.cli._files import is_hdf5
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "x.h5ad"
    >>> _ = file.write_text("gene,count")
    >>> is_hdf5(file)
    False
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            handle.seek(offset)
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
            if offset > 1 << 20:
                break
    return False


def read_h5ad(path: str | os.PathLike, *, what: str = "input", backed: bool = False) -> AnnData:
    """Read an ``.h5ad`` file, or raise a :class:`CLIError` that says what the file is instead.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for the messages.
    backed
        Open read-only in backed mode (``X`` stays on disk); close it with ``adata.file.close()``.

    Returns
    -------
    The AnnData (in memory unless ``backed``). The file is opened read-only.
    """
    import anndata

    file = existing_file(path, what)
    if not is_hdf5(file):
        hint = _CONVERT.get(file.suffix.lower())
        fix = (
            f"; read it in Python ({hint}) and save it with adata.write_h5ad"
            if hint
            else "; an .h5ad is written by AnnData.write_h5ad"
        )
        raise CLIError(f"{what} file {file} is not an h5ad file (it is not HDF5){fix}")
    try:
        return anndata.read_h5ad(file, backed="r" if backed else None)
    except Exception as err:
        raise CLIError(
            f"{what} file {file} is HDF5 but not a readable AnnData h5ad ({one_line(err)})"
        ) from err


def check_output(
    path: str | os.PathLike,
    *,
    suffix: str,
    force: bool,
    inputs: Iterable[str | os.PathLike] = (),
    what: str = "output",
) -> Path:
    """Check, before any work is done, that ``path`` can be written.

    Parameters
    ----------
    path
        The output file.
    suffix
        Its required suffix (``".h5ad"``, ``".npz"``).
    force
        Allow replacing an existing file, the input included (``--force``).
    inputs
        The command's input files.
    what
        The option that names the file, for the messages.

    Returns
    -------
    The output path.

    Raises
    ------
    CLIError
        When the suffix is wrong, the folder is missing or read-only, or the file exists (or is
        an input) and ``force`` is off.
    """
    out = Path(path)
    if out.suffix != suffix:
        raise CLIError(f"{what} {out} must end in {suffix}")
    if out.is_dir():
        raise CLIError(f"{what} {out} is a folder; give a file name ending in {suffix}")
    folder = out.parent
    if not folder.is_dir():
        raise CLIError(f"{what} folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"{what} folder {folder} is not writable")
    if out.exists() and not force:
        for source in inputs:
            if Path(source).exists() and os.path.samefile(out, source):
                raise CLIError(
                    f"{what} {out} is the input file; choose another file, or pass --force to replace the "
                    "input (it is replaced only once the job has succeeded)"
                )
        raise CLIError(f"{what} {out} already exists; pass --force to replace it, or choose another file")
    return out


#: Temporary outputs of scelmo 0.1's command line (``.NAME.tmp-<12 hex>.SUFFIX``), which name no writer.
_LEGACY_TEMP = re.compile(r"^\..+\.tmp-[0-9a-f]{12}(\.[^.]+)?$")


def remove_stale_outputs(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary outputs that killed commands left in ``folder`` (not in its subfolders).

    A temporary file is stale when the process that wrote it is gone, or when nothing has
    written to it for an hour (see :func:`scelmo._atomic.is_stale`); the files of a command
    still running beside this one are kept. Only ``folder`` itself is looked at, since an
    output folder may be a large tree (a home folder) that is not scelmo's.

    Parameters
    ----------
    folder
        The output folder.

    Returns
    -------
    The paths removed.

    Examples
    --------
    >>> import os, tempfile, pathlib
    >>> from scelmo.cli._files import remove_stale_outputs
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / ".tmp-1@0123abcd-0123456789ab-out.h5ad").write_bytes(b"half")
    >>> os.utime(folder / ".tmp-1@0123abcd-0123456789ab-out.h5ad", (0, 0))
    >>> [p.name for p in remove_stale_outputs(folder)]
    ['.tmp-1@0123abcd-0123456789ab-out.h5ad']
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(TEMP_PREFIX) or _LEGACY_TEMP.match(entry.name)):
            continue
        path = Path(entry.path)
        if not is_stale(path):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(out: Path, *, force: bool) -> Iterator[Path]:
    """A temporary path beside ``out``; moved over ``out`` when the block ends without error.

    Stale temporary files of killed commands in ``out``'s folder are removed first (see
    :func:`remove_stale_outputs`). The block writes to a temporary path (see
    :func:`scelmo._atomic.atomic_write`: hidden, in ``out``'s folder, ending in ``out``'s name,
    named after this process); it is removed if the block raises, on Ctrl-C, and on SIGTERM
    (which then ends the command with exit code 143).

    Parameters
    ----------
    out
        The destination.
    force
        Replace ``out`` if it has appeared meanwhile (otherwise that is an error).

    Yields
    ------
    The temporary path.

    Raises
    ------
    CLIError
        If ``out`` appeared while the block ran and ``force`` is off.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scelmo.cli._files import atomic_path
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "genes.txt"
    >>> with atomic_path(out, force=False) as tmp:
    ...     _ = tmp.write_text("CD3E")
    >>> out.read_text(), [p.name for p in out.parent.iterdir()]
    ('CD3E', ['genes.txt'])
    """
    remove_stale_outputs(out.parent)
    with remove_temp_files_on_sigterm(), atomic_write(out) as tmp:
        yield tmp
        if not tmp.is_file():
            raise RuntimeError(f"nothing was written to {tmp}")
        # Checked again at the end: another command may have written `out` while this one ran.
        if out.exists() and not force:
            raise CLIError(f"output {out} appeared while the job ran; pass --force to replace it")


def write_h5ad(adata: AnnData, out: Path, *, force: bool) -> None:
    """Write ``adata`` to ``out`` atomically (see :func:`atomic_path`)."""
    with atomic_path(out, force=force) as tmp:
        adata.write_h5ad(tmp)


def write_table(table: GeneEmbeddings, out: Path, *, force: bool) -> None:
    """Write a gene table to ``out`` (``.npz``) atomically (see :func:`atomic_path`)."""
    with atomic_path(out, force=force) as tmp:
        table.write(tmp)


def read_text_lines(path: str | os.PathLike, *, what: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file, without ``#`` comment lines and trailing whitespace.

    Parameters
    ----------
    path
        The file.
    what
        What the file holds, for the messages.

    Returns
    -------
    The lines, in order.

    Raises
    ------
    CLIError
        When the file is missing, binary (an h5ad, an .npz) or empty.
    """
    file = existing_file(path, what)
    raw = file.read_bytes()
    if b"\0" in raw[:8192]:
        raise CLIError(f"{what} file {file} is not a text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CLIError(f"{what} file {file} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = [line.rstrip() for line in text.splitlines()]
    lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise CLIError(f"{what} file {file} is empty")
    return lines


def describe_shape(value: Any) -> str:
    """``"700 x 50"`` for an array-like, its type name otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.cli._files import describe_shape
    >>> describe_shape(np.zeros((700, 50)))
    '700 x 50'
    """
    shape = getattr(value, "shape", None)
    if shape is None:
        return type(value).__name__
    return " x ".join(str(n) for n in shape)
