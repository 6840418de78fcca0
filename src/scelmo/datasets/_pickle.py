"""Unpickling only what is known: a pickle can run arbitrary code when it is loaded."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from ._hashing import file_sha256


def read_trusted_pickle(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    trusted: bool = False,
) -> Any:
    """Read a pickle, but only if its hash is the expected one or the caller vouches for it.

    Loading a pickle executes whatever code it was made to run, so a pickle from the internet
    must only be loaded when its bytes are exactly the published ones.

    Parameters
    ----------
    path
        The pickle. Compressed pickles (``.gz``, ``.bz2``, ``.xz``, ``.zip``, ``.zst``) are
        decompressed by :func:`pandas.read_pickle`, which also reads plain pickles.
    sha256
        The expected hex SHA-256 digest of the file (as published, or as pinned in the data
        registry). The file is read only if its digest equals this.
    trusted
        ``True`` reads the file without any check: for pickles you made yourself.

    Returns
    -------
    The unpickled object.

    Raises
    ------
    ValueError
        If neither a matching ``sha256`` nor ``trusted=True`` is given, if the digest differs,
        or if the file is empty or cut short (the message names it).

    Examples
    --------
    >>> import os, pickle, tempfile
    >>> from scelmo.datasets import read_trusted_pickle
    >>> path = os.path.join(tempfile.mkdtemp(), "genes.pkl")
    >>> with open(path, "wb") as handle:
    ...     pickle.dump({"CD3E": 1}, handle)
    >>> read_trusted_pickle(path, trusted=True)
    {'CD3E': 1}
    >>> import hashlib
    >>> digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    >>> read_trusted_pickle(path, sha256=digest)
    {'CD3E': 1}
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No pickle at {path}.")
    if not trusted:
        if sha256 is None:
            raise ValueError(
                f"Refusing to unpickle {path}: a pickle can run arbitrary code when loaded and this one "
                "is not verified. Pass its published hash as `sha256=...` (the file is then read only if "
                "its bytes match), or `trusted=True` if you made the file yourself."
            )
        actual = file_sha256(path)
        if actual != sha256.lower().removeprefix("sha256:"):
            raise ValueError(
                f"Refusing to unpickle {path}: its sha256 is {actual}, but {sha256} was expected. "
                "The file is corrupted, incomplete or a different version: download it again, or pass "
                "the correct hash."
            )
    if path.stat().st_size == 0:
        raise ValueError(f"The pickle {path} is empty (0 bytes): download or write it again.")
    try:
        return pd.read_pickle(path)  # noqa: TID251 - the one reader: the file is verified or trusted above
    except (EOFError, pickle.UnpicklingError) as err:
        # Only a trusted file gets here damaged: a verified one has the published bytes.
        reason = " ".join(str(err).split())
        raise ValueError(
            f"The pickle {path} is damaged or incomplete ({type(err).__name__}: {reason}): download or "
            "write it again."
        ) from err
