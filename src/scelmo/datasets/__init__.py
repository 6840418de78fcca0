"""The data registry (pooch): gene tables, dictionaries, checkpoints.

Every file scelmo can use is a named entry in ``registry.toml`` (url or package file, sha256,
license, source). :func:`fetch` returns a verified local path, downloading into
:func:`data_dir` (``$SCELMO_DATA_DIR`` or the OS cache) only when the file is not already
there with the right hash. Data that cannot be downloaded (the LangCell checkpoint) is
pointed at with :func:`register_local`; your own hosted tables are added with :func:`register`.

Hosts that publish a zip archive and only its md5 (GenePT on Zenodo) are entries too: the
archive is verified by md5, the members an entry names are extracted from it alone, and the
sha256 of each extracted member is recorded (:func:`verified_sha256`).

Pickled sources are unpickled only after their hash matched (:func:`read_trusted_pickle`) and
are then kept in a safe format under ``data_dir()/derived/`` (:func:`load_derived`, keyed by the
source's :func:`file_sha256`).

Data larger than memory are read lazily: :func:`read_lazy` (``.h5ad``/``.zarr``) and
:func:`read_soma` (TileDB-SOMA experiments such as the CELLxGENE Census) give an AnnData whose
``X`` is a dask array read block by block in the tasks that need it.
"""

from ._derived import load_derived
from ._geneformer import GeneformerDictionaries, geneformer_dictionaries
from ._hashing import file_sha256
from ._lazy import read_lazy, read_soma, read_soma_block
from ._pickle import read_trusted_pickle
from ._registry import (
    available,
    can_verify,
    data_dir,
    entry,
    fetch,
    register,
    register_local,
    verified_sha256,
)

__all__ = [
    "GeneformerDictionaries",
    "available",
    "can_verify",
    "data_dir",
    "entry",
    "fetch",
    "file_sha256",
    "geneformer_dictionaries",
    "load_derived",
    "read_lazy",
    "read_soma",
    "read_soma_block",
    "read_trusted_pickle",
    "register",
    "register_local",
    "verified_sha256",
]
