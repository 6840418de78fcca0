"""The records the tools leave in ``adata.uns``, as typed definitions with one reader each.

A tool writes its record with ``Record(...).write(adata, key)`` and every consumer (another
tool, a plot, ``scelmo info``) reads it with ``Record.read(adata, key)``, which says which tool
to run when the record is missing, or ``Record.matches(value)`` to recognise one. What is
stored stays plain dicts and lists (``.h5ad`` and ``.zarr`` can hold them), as scanpy's
``uns['neighbors']``; the classes only give them names and one place to be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import numpy as np
from anndata import AnnData

__all__ = ["AnnotationRecord", "ElmoRecord", "TokensRecord", "h5ad_safe"]

R = TypeVar("R", bound="_Record")


def _plain(value: Any) -> Any:
    """``value`` with mappings as dicts (h5ad reads them back as dicts of numpy scalars)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def h5ad_safe(value: Any) -> Any:
    """A copy of ``value`` that ``write_h5ad`` can store in ``uns`` (``None`` dropped, tuples as lists).

    Examples
    --------
    >>> from scelmo._records import h5ad_safe
    >>> h5ad_safe({"a": None, "b": (1, 2), "c": {"d": None, "e": "x"}})
    {'b': [1, 2], 'c': {'e': 'x'}}
    """
    if isinstance(value, Mapping):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        items = [h5ad_safe(v) for v in value if v is not None]
        if items and all(isinstance(v, Mapping) for v in items):
            return {str(i): v for i, v in enumerate(items)}
        if items and not all(isinstance(v, str | int | float | bool | np.number) for v in items):
            return [str(v) for v in items]
        return list(items)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [str(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class _Record:
    """Shared reading and writing; subclasses list their fields and the tool that writes them."""

    #: The function that writes the record, for the message when it is missing.
    TOOL: ClassVar[str] = ""
    #: Fields that must be present for a ``uns`` value to be this record.
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def matches(cls, value: Any) -> bool:
        """Whether a ``uns`` value has this record's shape."""
        return isinstance(value, Mapping) and all(name in value for name in cls.REQUIRED)

    @classmethod
    def from_mapping(cls: type[R], value: Mapping[str, Any]) -> R:
        """The record held by a ``uns`` value (unknown entries are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: _plain(v) for k, v in value.items() if k in known})

    @classmethod
    def read(cls: type[R], adata: AnnData, key: str) -> R:
        """The record at ``adata.uns[key]``.

        Raises
        ------
        KeyError
            If ``adata.uns[key]`` is missing or is not this kind of record; the message names
            the tool that writes it.
        """
        value = adata.uns.get(key)
        if not cls.matches(value):
            what = "not found" if value is None else "is not a record of " + cls.TOOL
            raise KeyError(f"adata.uns[{key!r}] {what}: run scelmo.{cls.TOOL}(..., key_added={key!r}) first.")
        return cls.from_mapping(value)

    def write(self, adata: AnnData, key: str) -> None:
        """Store the record at ``adata.uns[key]`` in a form ``.h5ad`` can hold."""
        adata.uns[key] = h5ad_safe(asdict(self))


@dataclass
class ElmoRecord(_Record):
    """What :func:`scelmo.tl.elmo_embed` records: its parameters, the gene table and its coverage.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo._records import ElmoRecord
    >>> adata = ad.AnnData(np.ones((1, 1)))
    >>> ElmoRecord(params={"matrix": "layers['log1p']"}, gene_table={}, coverage={}).write(adata, "X_elmo")
    >>> ElmoRecord.read(adata, "X_elmo").layer
    'log1p'
    """

    TOOL: ClassVar[str] = "tl.elmo_embed"
    REQUIRED: ClassVar[tuple[str, ...]] = ("params", "gene_table", "coverage")

    params: dict[str, Any]
    gene_table: dict[str, Any]
    coverage: dict[str, Any]
    #: ``None`` when the embeddings are a dask array not computed yet.
    n_empty_cells: int | None = None

    @property
    def matrix_source(self) -> str:
        """The matrix embedded: ``"X"``, ``"raw"`` or ``"layers['name']"`` (``""`` if unrecorded)."""
        return str(self.params.get("matrix", ""))

    @property
    def layer(self) -> str | None:
        """The layer embedded, or ``None``."""
        found = re.fullmatch(r"layers\[(['\"])(.+)\1\]", self.matrix_source)
        if found:
            return found.group(2)
        layer = self.params.get("layer")
        return None if layer is None else str(layer)

    @property
    def use_raw(self) -> bool | None:
        """Whether ``adata.raw`` was embedded (``None`` if unrecorded)."""
        if self.matrix_source in ("raw", "X") or self.layer is not None:
            return self.matrix_source == "raw"
        use_raw = self.params.get("use_raw")
        return None if use_raw is None else bool(use_raw)


@dataclass
class TokensRecord(_Record):
    """What :func:`scelmo.pp.tokenize` records: parameters, vocabulary matches, the HGNC fallback.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo._records import TokensRecord
    >>> adata = ad.AnnData(np.ones((1, 1)))
    >>> params = {"encoding": "geneformer_v1_rank_value", "max_length": 2048}
    >>> TokensRecord(params=params, n_genes_matched=1).write(adata, "langcell_tokens")
    >>> TokensRecord.read(adata, "langcell_tokens").n_genes_matched
    1
    """

    TOOL: ClassVar[str] = "pp.tokenize"
    REQUIRED: ClassVar[tuple[str, ...]] = ("params", "n_genes_matched")

    params: dict[str, Any]
    n_genes_matched: int
    n_genes_unmatched: int = 0
    #: ``None`` when the tokens are a dask array not computed yet.
    n_empty_cells: int | None = None
    hgnc: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def matches(cls, value: Any) -> bool:
        """Whether a ``uns`` value is a token record (its encoding says so)."""
        return (
            super().matches(value)
            and isinstance(value["params"], Mapping)
            and value["params"].get("encoding") == "geneformer_v1_rank_value"
        )


@dataclass
class AnnotationRecord(_Record):
    """What every annotation method records (see :mod:`scelmo.annotation._output`).

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from scelmo._records import AnnotationRecord
    >>> adata = ad.AnnData(np.ones((1, 1)))
    >>> adata.uns["zeroshot"] = {"method": "elmo", "classes": ["B cell", "T cell"], "n_unknown": 0}
    >>> AnnotationRecord.read(adata, "zeroshot").classes
    ['B cell', 'T cell']
    """

    TOOL: ClassVar[str] = "tl.zeroshot_annotate or scelmo.tl.knn_annotate"
    REQUIRED: ClassVar[tuple[str, ...]] = ("method", "classes")

    method: str
    classes: list[str]
    texts: dict[str, Any] = field(default_factory=dict)
    ontology: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    n_unknown: int = 0
    n_ancestor: int = 0
    checkpoint_hash: str | None = None

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
