"""Class texts in the gene table's space: its encoder (checked against its provenance) and their vectors.

Class texts, gene texts and cells are comparable only when one encoder embedded them all: the
encoder is recreated from the gene table's provenance, and any other is refused. The same
encoder embeds the bare gene symbols whose direction ``unspell`` takes out of the gene vectors.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scelmo.text import TextEncoder

__all__ = ["SYMBOL_ONLY", "cached", "class_vectors", "project_out_symbols", "resolve_encoder"]

#: A gene vector whose residual after projecting out its symbol is shorter than this is dropped.
SYMBOL_ONLY = 0.05


def cached(
    encoder: TextEncoder, cache: bool | str | os.PathLike, cache_dir: str | os.PathLike | None
) -> TextEncoder:
    """``encoder`` reading and writing its vectors in the text cache ``cache`` / ``cache_dir`` names."""
    from scelmo.text import CachedEncoder, resolve_cache

    store = resolve_cache(cache, cache_dir)
    return encoder if store is None else CachedEncoder(encoder, cache=store)


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.is_dir() and pb.is_dir() and pa.resolve() == pb.resolve()


def resolve_encoder(provenance: Mapping[str, Any], encoder: Any = None) -> TextEncoder:
    """The text encoder for class texts, checked against the gene table's provenance.

    Parameters
    ----------
    provenance
        The gene table's provenance (``GeneEmbeddings.provenance`` or
        ``adata.uns['X_elmo']['gene_table']``): ``encoder`` and ``model`` say what built it.
    encoder
        ``None``: recreate the table's encoder from its provenance. Otherwise anything
        :func:`scelmo.text.get_encoder` accepts; it must be the table's encoder.

    Returns
    -------
    A :class:`~scelmo.text.TextEncoder`.

    Raises
    ------
    ValueError
        When the encoder differs from the one recorded in the table, or nothing is recorded and
        no encoder was given.

    Examples
    --------
    >>> from scelmo.annotation._elmo_text import resolve_encoder
    >>> provenance = {"encoder": "sentence-transformers", "model": "sentence-transformers/all-MiniLM-L6-v2"}
    >>> resolve_encoder(provenance).model  # doctest: +SKIP
    'sentence-transformers/all-MiniLM-L6-v2'
    """
    from scelmo.text import get_encoder
    from scelmo.text.encoders import DEFAULT_LOCAL_MODEL

    table_encoder = provenance.get("encoder")
    table_model = provenance.get("model")
    if encoder is None:
        if not table_model:
            raise ValueError(
                "The gene table does not record which text encoder built it (no 'model' in its provenance), "
                "so class texts cannot be embedded in its space automatically. Pass encoder= the encoder "
                "that built the table (e.g. 'openai:text-embedding-ada-002' for GenePT's tables)."
            )
        if table_encoder == "openai":
            encoder = f"openai:{table_model}"
        elif table_model == DEFAULT_LOCAL_MODEL:
            encoder = "local"
        else:
            encoder = table_model
    resolved = get_encoder(encoder)
    params = resolved.params()
    if not table_model:
        warnings.warn(
            "The gene table does not record its text encoder; assuming it was built with "
            f"{params.get('encoder')} {params.get('model')!r}. Similarities are meaningless if it was not.",
            UserWarning,
            stacklevel=3,
        )
        return resolved
    used_model = str(params.get("model", ""))
    used_encoder = params.get("encoder")
    if not _same_model(used_model, str(table_model)) or (table_encoder and used_encoder != table_encoder):
        raise ValueError(
            f"The class texts would be embedded with {used_encoder} {used_model!r}, but the gene table was "
            f"built with {table_encoder} {table_model!r}: the two live in different spaces, so their "
            "similarities mean nothing. Pass encoder= the table's encoder (or leave it out), or rebuild "
            "the table with this encoder (scelmo.pp.build_gene_embeddings(..., encoder=...))."
        )
    return resolved


def class_vectors(
    encoder: TextEncoder,
    texts: Mapping[str, Sequence[str]],
    classes: Sequence[str],
    *,
    cache: bool | str | os.PathLike = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """One unit vector per class: the normalised mean of its texts' normalised embeddings.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.text import TextEncoder
    >>> from scelmo.annotation._elmo_text import class_vectors
    >>> class Fixed(TextEncoder):
    ...     name, model = "demo", "fixed"
    ...     def encode_batches(self, texts, *, progress=False):
    ...         yield np.arange(len(texts)), np.array([[1.0, 0.0] if "B" in t else [0.0, 1.0] for t in texts], dtype=np.float32)
    >>> class_vectors(Fixed(), {"B": ["B cell"], "T": ["T cell", "T"]}, ["B", "T"], cache=False).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    encoder = cached(encoder, cache, cache_dir)
    flat = [t for c in classes for t in texts[c]]
    owner = np.repeat(np.arange(len(classes)), [len(texts[c]) for c in classes])
    vectors = np.asarray(encoder.encode(flat), dtype=np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    out = np.zeros((len(classes), vectors.shape[1]))
    np.add.at(out, owner, vectors)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def project_out_symbols(
    rows: np.ndarray,
    symbols: list[str],
    encoder: TextEncoder,
    cache: bool | str | os.PathLike = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """Gene vectors without their component along the embedding of the bare symbol.

    A gene text begins with its symbol and aliases, which a general-domain encoder embeds by
    their letters ("B cell" is close to BAX, BLVRB, B9D1; "dendritic cell" to DENND2D): the part
    of a gene's vector that its symbol alone explains says how it is spelled, not what it does.

    Parameters
    ----------
    rows
        Unit gene vectors (genes x dim).
    symbols
        The genes' symbols, embedded by ``encoder``.
    encoder
        The gene table's text encoder.
    cache, cache_dir
        Where the symbols' vectors are kept (see :func:`scelmo.text.resolve_cache`).

    Returns
    -------
    The unit residual vectors; a gene whose residual is shorter than ``SYMBOL_ONLY`` gets zeros.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.text import TextEncoder
    >>> from scelmo.annotation._elmo_text import project_out_symbols
    >>> class Axis(TextEncoder):
    ...     name, model = "demo", "axis"
    ...     def encode_batches(self, texts, *, progress=False):
    ...         yield np.arange(len(texts)), np.array([[1.0, 0.0]] * len(texts), dtype=np.float32)
    >>> project_out_symbols(np.array([[0.6, 0.8]]), ["CD3E"], Axis(), cache=False).tolist()
    [[0.0, 1.0]]
    """
    encoder = cached(encoder, cache, cache_dir)
    spelled = np.asarray(encoder.encode(symbols), dtype=np.float64)
    spelled /= np.maximum(np.linalg.norm(spelled, axis=1, keepdims=True), 1e-12)
    out = rows - (rows * spelled).sum(axis=1, keepdims=True) * spelled
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    # a text that is (almost) only its symbol says nothing else: no vector rather than noise
    return np.where(norms > SYMBOL_ONLY, out / np.maximum(norms, 1e-12), 0.0)
