"""Gene embedding tables: a gene x dimension matrix with its provenance.

The published tables (GenePT, scELMo) are pickled ``dict[symbol -> vector]``. We read those only
when their hash is verified or the caller trusts them, and save tables in a safe ``.npz`` file
(``numpy.load(..., allow_pickle=False)``) that carries the provenance as JSON.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._atomic import atomic_write
from ._logging import logger

#: Suffixes read as pickled ``dict[symbol -> vector]`` (the GenePT / scELMo release format).
PICKLE_SUFFIXES = (".pickle", ".pkl", ".pckl")
#: Format version written into saved tables, bumped when the layout changes.
FORMAT_VERSION = 1

IdType = Literal["auto", "symbol", "ensembl"]
Match = Literal["hgnc", "exact"]


class GeneEmbeddings:
    """A table of gene embeddings (genes x dimensions) with provenance.

    Parameters
    ----------
    genes
        Gene identifiers (HGNC symbols or Ensembl ids), unique.
    vectors
        Array of shape ``(len(genes), dim)``; stored as float32.
    provenance
        JSON-serialisable description of how the table was made: text source, encoder,
        model, date. The content hash is always computed from the data, never trusted
        from here.

    Examples
    --------
    >>> import numpy as np
    >>> import scelmo as se
    >>> table = se.GeneEmbeddings(["CD3E", "MS4A1"], np.eye(2), provenance={"text_source": "manual"})
    >>> table
    GeneEmbeddings(2 genes x 2 dims, text_source='manual')
    >>> table["CD3E"]
    array([1., 0.], dtype=float32)
    """

    def __init__(
        self,
        genes: Sequence[str] | pd.Index,
        vectors: np.ndarray,
        *,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        genes_index = pd.Index(np.asarray(list(genes), dtype=object).astype(str), name="gene")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise ValueError(f"`vectors` must be 2-dimensional (genes x dims), got shape {vectors.shape}.")
        if vectors.shape[0] != len(genes_index):
            raise ValueError(
                f"{len(genes_index)} genes but {vectors.shape[0]} vectors: pass one row per gene."
            )
        if genes_index.has_duplicates:
            dupes = genes_index[genes_index.duplicated()].unique()[:5].tolist()
            raise ValueError(
                f"Gene names must be unique; duplicated: {dupes}. "
                "Aggregate or drop the duplicates before building the table."
            )
        # Our own copy: the table is made read-only, which must not touch the caller's array.
        vectors = np.array(vectors, dtype=np.float32, order="C", copy=True)
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} gene vectors contain NaN or infinite values "
                f"(e.g. {genes_index[bad][:5].tolist()}); drop or recompute them."
            )
        vectors.setflags(write=False)
        self._genes = genes_index
        self._vectors = vectors
        self.provenance: dict[str, Any] = dict(provenance or {})
        self._hash: str | None = None

    # ------------------------------------------------------------------ basics
    @property
    def genes(self) -> pd.Index:
        """Gene identifiers, in row order."""
        return self._genes

    @property
    def vectors(self) -> np.ndarray:
        """The read-only float32 matrix, one row per gene."""
        return self._vectors

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._vectors.shape[1]

    @property
    def content_hash(self) -> str:
        """sha256 over gene names and float32 vectors: identical tables have identical hashes."""
        if self._hash is None:
            digest = hashlib.sha256()
            digest.update("\n".join(self._genes).encode())
            digest.update(b"\0")
            digest.update(np.asarray(self._vectors.shape, dtype="<i8").tobytes())
            digest.update(self._vectors.astype("<f4", copy=False).tobytes())
            self._hash = digest.hexdigest()
        return self._hash

    def __len__(self) -> int:
        return len(self._genes)

    def __contains__(self, gene: object) -> bool:
        return gene in self._genes

    def __getitem__(self, gene: str | Sequence[str]) -> np.ndarray:
        if isinstance(gene, str):
            if gene not in self._genes:
                raise KeyError(f"Gene {gene!r} is not in this table of {len(self)} genes.")
            return self._vectors[self._genes.get_loc(gene)]
        positions = self._genes.get_indexer(list(gene))
        if (positions < 0).any():
            missing = [g for g, p in zip(gene, positions, strict=True) if p < 0][:5]
            raise KeyError(f"Genes not in the table: {missing}")
        return self._vectors[positions]

    def __repr__(self) -> str:
        source = self.provenance.get("text_source")
        extra = f", text_source={source!r}" if source else ""
        return f"GeneEmbeddings({len(self)} genes x {self.dim} dims{extra})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GeneEmbeddings):
            return NotImplemented
        return self.content_hash == other.content_hash

    __hash__ = None  # type: ignore[assignment]  # mutable provenance: not hashable

    # --------------------------------------------------------------- builders
    @classmethod
    def from_dict(
        cls, mapping: Mapping[str, Any], *, provenance: Mapping[str, Any] | None = None
    ) -> GeneEmbeddings:
        """Build a table from ``dict[gene -> vector]``, the format of the published pickles.

        Vectors may be shaped ``(d,)`` or ``(1, d)``; all must have the same ``d``.

        Examples
        --------
        >>> import scelmo as se
        >>> se.GeneEmbeddings.from_dict({"CD3E": [[0.1, 0.2]], "CD19": [0.3, 0.4]}).dim
        2
        """
        if not isinstance(mapping, Mapping):
            raise TypeError(
                f"Expected a mapping gene -> vector (the GenePT/scELMo pickle format), got {type(mapping).__name__}."
            )
        if not mapping:
            raise ValueError("The mapping is empty: no genes to build a table from.")
        genes = list(mapping)
        matrix: np.ndarray | None = None
        dims: dict[int, list[str]] = {}
        # GenePT's keys include aliases that share their gene's list object: each object is
        # converted once. The objects are kept referenced so that no id() is reused meanwhile.
        converted: dict[int, int] = {}
        objects = []
        for row, gene in enumerate(genes):
            value = mapping[gene]
            first = converted.get(id(value))
            if first is not None and matrix is not None:  # the same object as an earlier row
                matrix[row] = matrix[first]
                continue
            vector = np.asarray(value, dtype=np.float32)
            if vector.ndim == 2 and vector.shape[0] == 1:
                vector = vector[0]
            if vector.ndim != 1:
                raise ValueError(
                    f"Vector of gene {gene!r} has shape {vector.shape}; expected (d,) or (1, d)."
                )
            examples = dims.setdefault(vector.shape[0], [])
            if len(examples) < 3:
                examples.append(gene)
            if matrix is None:
                # One float32 matrix filled row by row: a 93,800 x 1536 table never exists as
                # a list of float64 rows plus their stacked copy.
                matrix = np.empty((len(genes), vector.shape[0]), dtype=np.float32)
            if vector.shape[0] == matrix.shape[1]:
                matrix[row] = vector
                converted[id(value)] = row
                objects.append(value)
        if len(dims) > 1:
            raise ValueError(f"Vectors have different lengths (length: example genes): {dims}")
        assert matrix is not None  # the mapping is not empty
        return cls(genes, matrix, provenance=provenance)

    @classmethod
    def from_dataframe(
        cls, frame: pd.DataFrame, *, provenance: Mapping[str, Any] | None = None
    ) -> GeneEmbeddings:
        """Build a table from a DataFrame indexed by gene with one column per dimension.

        Examples
        --------
        >>> import pandas as pd
        >>> import scelmo as se
        >>> se.GeneEmbeddings.from_dataframe(pd.DataFrame([[1.0, 0.0]], index=["CD3E"])).genes.tolist()
        ['CD3E']
        """
        return cls(frame.index.astype(str), frame.to_numpy(dtype=np.float64), provenance=provenance)

    def to_dataframe(self) -> pd.DataFrame:
        """The table as a DataFrame (genes x dims).

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> se.GeneEmbeddings(["A"], np.ones((1, 3))).to_dataframe().shape
        (1, 3)
        """
        return pd.DataFrame(self._vectors, index=self._genes.copy())

    # ---------------------------------------------------------------- file io
    @classmethod
    def read(
        cls, path: str | PathLike, *, trusted: bool = False, sha256: str | None = None
    ) -> GeneEmbeddings:
        """Read a table from ``.npz`` (our safe format) or a published pickle.

        Parameters
        ----------
        path
            A ``.npz`` written by :meth:`write`, or a GenePT/scELMo pickle
            (``.pickle``/``.pkl``) holding ``dict[symbol -> vector]``.
        trusted
            Pickles can run code when loaded: they are read only when their sha256 equals
            ``sha256`` or when you pass ``trusted=True`` for a file you made yourself.
        sha256
            Expected hex digest of a pickle.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> import scelmo as se
        >>> path = os.path.join(tempfile.mkdtemp(), "table.npz")
        >>> se.GeneEmbeddings(["CD3E"], np.ones((1, 4))).write(path)
        >>> se.GeneEmbeddings.read(path).dim
        4
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No gene table at {path}.")
        suffix = _suffix(path.name)
        if suffix == ".npz":
            return cls._read_npz(path)
        if suffix in PICKLE_SUFFIXES:
            return cls._read_pickle(path, sha256=sha256, trusted=trusted)
        raise ValueError(
            f"Unknown gene table format {path.suffix!r} for {path.name}: use .npz (scelmo) or "
            ".pickle/.pkl (GenePT/scELMo dict of vectors)."
        )

    @staticmethod
    def requires_trust(source: str | PathLike, *, registry: bool = False) -> bool:
        """Whether reading ``source`` needs ``trusted=True``: it is a pickle that no hash verifies.

        The rule :meth:`read` and :meth:`load` apply, for callers that check before any work
        (the command line). A file given to :meth:`read` without ``sha256`` needs trust when
        it is a pickle; a registry entry needs it when its file is not a ``.npz`` and the
        registry can verify neither it nor the archive it comes from
        (:func:`scelmo.datasets.can_verify`). Nothing is read or downloaded.

        Parameters
        ----------
        source
            A file, or with ``registry=True`` a registry entry name.
        registry
            ``source`` is a registry entry.

        Returns
        -------
        ``True`` when only ``trusted=True`` lets it be read.

        Raises
        ------
        KeyError
            For an unknown registry entry.

        Examples
        --------
        >>> import scelmo as se
        >>> se.GeneEmbeddings.requires_trust("genes.pkl"), se.GeneEmbeddings.requires_trust("genes.npz")
        (True, False)
        >>> se.GeneEmbeddings.requires_trust("genept_ada_text", registry=True)  # md5-checked archive
        False
        """
        if not registry:
            return _suffix(Path(source).name) in PICKLE_SUFFIXES
        from . import datasets

        entry = datasets.entry(str(source))
        filename = str(entry.get("filename") or entry.get("path") or "")
        return _suffix(filename) != ".npz" and not datasets.can_verify(str(source))

    @classmethod
    def _read_pickle(cls, path: Path, *, sha256: str | None, trusted: bool) -> GeneEmbeddings:
        from .datasets import read_trusted_pickle
        from .datasets._hashing import file_sha256

        mapping = read_trusted_pickle(path, sha256=sha256, trusted=trusted)
        provenance = {"source_file": path.name, "source_sha256": file_sha256(path), "format": "pickle"}
        return cls.from_dict(mapping, provenance=provenance)

    @classmethod
    def load(cls, name: str, *, trusted: bool = False) -> GeneEmbeddings:
        """Load a table from the data registry by name, e.g. ``"genept_ada_text"``.

        A pickle is unpickled only when its bytes are verified: by the sha256 the registry
        publishes, or, for a member of a zip archive (GenePT's tables on Zenodo), by the sha256
        recorded when it was extracted from the archive whose md5 matched
        (:func:`scelmo.datasets.verified_sha256`); the file is checked again right before it is
        read, so a member changed after extraction is refused. Anything else needs
        ``trusted=True``.

        Parameters
        ----------
        name
            Registry entry (see :func:`scelmo.datasets.available`), e.g. ``"genept_ada_text"``
            (1536-d, text-embedding-ada-002) or ``"genept_model_3_text"`` (3072-d,
            text-embedding-3-large).
        trusted
            Unpickle an entry that nothing verifies (no published hash). Ignored where a hash is
            known: the file is always checked against it.

        Examples
        --------
        >>> import scelmo as se
        >>> table = se.GeneEmbeddings.load("genept_ada_text")  # doctest: +SKIP
        >>> table.dim  # doctest: +SKIP
        1536
        """
        from . import datasets

        path = datasets.fetch(name)
        entry = datasets.entry(name)
        expected = datasets.verified_sha256(name)
        if _suffix(path.name) == ".npz":
            table = cls._read_npz(path)
        elif expected is None and not trusted:
            raise ValueError(
                f"Registry entry {name!r} has no published sha256, so its pickle is not unpickled. "
                f"Check the file at {path}, then load it with GeneEmbeddings.load({name!r}, trusted=True), "
                "or pin its hash with scelmo.datasets.register."
            )
        elif "archive" in entry or _suffix(path.name) in PICKLE_SUFFIXES:
            table = cls._read_pickle(path, sha256=expected, trusted=expected is None)
        else:
            table = cls.read(path, sha256=expected, trusted=expected is None)
        table.provenance.setdefault("registry_name", name)
        if "archive" in entry:
            archive = datasets.entry(entry["archive"])
            table.provenance.setdefault("registry_archive", entry["archive"])
            table.provenance.setdefault("archive_member", entry["member"])
            if archive.get("md5"):
                table.provenance.setdefault("archive_md5", archive["md5"])
        return table

    @classmethod
    def _read_npz(cls, path: Path) -> GeneEmbeddings:
        fix = (
            "write it again (GeneEmbeddings.write, `scelmo build-genes`), or fetch it again if it came "
            "from the data registry."
        )
        if path.stat().st_size == 0:
            raise ValueError(f"The gene table {path} is empty (0 bytes): {fix}")
        try:
            archive = np.load(path, allow_pickle=False)
        except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as err:
            raise ValueError(
                f"The gene table {path} is damaged or incomplete ({_reason(err)}): {fix}"
            ) from err
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"The gene table {path} is damaged or incomplete (not an .npz archive): {fix}")
        with archive:
            missing = {"genes", "vectors", "provenance"} - set(archive.files)
            if missing:
                raise ValueError(f"{path} is not a scelmo gene table: it lacks {sorted(missing)}; {fix}")
            try:
                genes = archive["genes"].astype(str)
                vectors = archive["vectors"]
                raw_provenance = str(archive["provenance"])
            except (zipfile.BadZipFile, EOFError, ValueError, zlib.error) as err:
                # A member cut short or with a bad CRC is only noticed when it is read.
                raise ValueError(
                    f"The gene table {path} is damaged or incomplete ({_reason(err)}): {fix}"
                ) from err
        try:
            provenance = json.loads(raw_provenance)
        except ValueError as err:
            raise ValueError(
                f"The gene table {path} is damaged: its provenance is not valid JSON ({_reason(err)}); {fix}"
            ) from err
        if not isinstance(provenance, dict):
            raise ValueError(
                f"The gene table {path} is damaged: its provenance is not a JSON object "
                f"(a {type(provenance).__name__}); {fix}"
            )
        table = cls(genes, vectors, provenance=provenance)
        stored = provenance.get("content_hash")
        if stored is not None and stored != table.content_hash:
            raise ValueError(
                f"{path} is corrupted: its content hash {table.content_hash[:12]}... differs from the "
                f"recorded {stored[:12]}...; rebuild or re-download the table."
            )
        return table

    def write(self, path: str | PathLike) -> None:
        """Save as ``.npz`` (no pickle), with provenance and the content hash.

        The file holds ``genes`` (unicode array), ``vectors`` (float32) and ``provenance``
        (a JSON string with ``content_hash``, ``format_version``, ``saved`` and whatever the
        table was built with: text source, encoder, model, date).

        The file appears whole or not at all: it is written beside ``path``, synced to the disk
        and then moved over ``path``. A save that fails (a full disk, Ctrl-C) raises and leaves
        a table already at ``path`` unchanged.

        Raises
        ------
        OSError
            If the file cannot be written; the message names it.

        Examples
        --------
        >>> import numpy as np, tempfile, os
        >>> import scelmo as se
        >>> se.GeneEmbeddings(["CD3E"], np.ones((1, 4))).write(os.path.join(tempfile.mkdtemp(), "t.npz"))
        """
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"Gene tables are saved as .npz; got {path.name!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        provenance = {
            **self.provenance,
            "content_hash": self.content_hash,
            "format_version": FORMAT_VERSION,
            "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        try:
            # The temporary file's name ends with `path`'s, so numpy keeps the name as given.
            with atomic_write(path) as tmp:
                np.savez(
                    tmp,
                    genes=np.asarray(self._genes, dtype=str),
                    vectors=self._vectors,
                    provenance=np.asarray(json.dumps(provenance, sort_keys=True, default=str)),
                )
        except OSError as err:
            raise OSError(
                err.errno,
                f"Could not save the gene table {path} ({err.strerror or err}): nothing was written, and a "
                "table already there is unchanged. Free some disk space or choose another folder, then save "
                "again.",
            ) from err

    save = write

    # -------------------------------------------------------------- combining
    def shuffled(self, seed: int = 0) -> GeneEmbeddings:
        """A control table: the same vectors, given to the wrong genes (rows permuted across genes).

        It keeps everything about the table except which gene has which vector, so a method that
        scores no better with it than with the real table does not use what the text says about
        each gene. scELMo's paper found random gene embeddings about as good as GPT-3.5's after
        fine-tuning: compare with this control (and :meth:`random_like`) before reading a gain
        as knowledge from text.

        Parameters
        ----------
        seed
            Seed of the permutation.

        Returns
        -------
        A new table; its provenance is this table's, plus ``control="shuffled"``, ``control_seed``
        and ``control_of`` (this table's content hash).

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> table = se.GeneEmbeddings(["A", "B", "C"], np.eye(3))
        >>> control = table.shuffled(seed=0)
        >>> sorted(map(tuple, control.vectors.tolist())) == sorted(map(tuple, table.vectors.tolist()))
        True
        >>> control.provenance["control"]
        'shuffled'
        """
        order = np.random.default_rng(seed).permutation(len(self))
        return GeneEmbeddings(
            self._genes, self._vectors[order], provenance=self._control_provenance("shuffled", seed)
        )

    def random_like(self, seed: int = 0) -> GeneEmbeddings:
        """A control table of the same genes and shape whose vectors are Gaussian noise.

        Entries are independent normal draws with mean 0 and the standard deviation of this
        table's entries, so the control has the table's scale but no content. See
        :meth:`shuffled` for why controls matter.

        Parameters
        ----------
        seed
            Seed of the draws.

        Returns
        -------
        A new table; its provenance is this table's, plus ``control="random"``, ``control_seed``
        and ``control_of`` (this table's content hash).

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> table = se.GeneEmbeddings(["A", "B"], np.array([[1.0, 2.0], [3.0, 4.0]]))
        >>> table.random_like(seed=1).vectors.shape
        (2, 2)
        """
        scale = float(self._vectors.std()) or 1.0
        noise = np.random.default_rng(seed).normal(0.0, scale, size=self._vectors.shape)
        return GeneEmbeddings(self._genes, noise, provenance=self._control_provenance("random", seed))

    def _control_provenance(self, kind: str, seed: int) -> dict[str, Any]:
        return {
            **self.provenance,
            "control": kind,
            "control_seed": int(seed),
            "control_of": self.content_hash,
        }

    def subset(self, genes: Iterable[str]) -> GeneEmbeddings:
        """The rows of ``genes`` (all must be present), keeping provenance.

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> se.GeneEmbeddings(["A", "B"], np.eye(2)).subset(["B"]).genes.tolist()
        ['B']
        """
        genes = list(genes)
        return GeneEmbeddings(genes, self[genes], provenance=self.provenance)

    def combine(
        self,
        other: GeneEmbeddings,
        *,
        how: Literal["sum", "concat"] = "sum",
        genes: Literal["intersection", "union"] = "intersection",
    ) -> GeneEmbeddings:
        """Combine two tables, as the paper's "GenePT + GPT-3.5" variants.

        Parameters
        ----------
        other
            The second table.
        how
            ``"sum"`` adds vectors (both tables must have the same dimension);
            ``"concat"`` concatenates them (dimension ``self.dim + other.dim``).
        genes
            ``"intersection"`` keeps genes present in both; ``"union"`` keeps all and uses
            zeros where a table lacks a gene (what the originals do for unmatched genes).

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> a = se.GeneEmbeddings(["A", "B"], np.ones((2, 2)))
        >>> b = se.GeneEmbeddings(["B", "C"], np.full((2, 2), 2.0))
        >>> a.combine(b).to_dataframe().loc["B"].tolist()
        [3.0, 3.0]
        >>> a.combine(b, how="concat", genes="union").dim
        4
        """
        if how not in ("sum", "concat"):
            raise ValueError(f"`how` must be 'sum' or 'concat', got {how!r}.")
        if genes not in ("intersection", "union"):
            raise ValueError(f"`genes` must be 'intersection' or 'union', got {genes!r}.")
        if how == "sum" and self.dim != other.dim:
            raise ValueError(f"Cannot sum tables of dimension {self.dim} and {other.dim}; use how='concat'.")
        if genes == "intersection":
            keep = self._genes.intersection(other._genes, sort=False)
            if len(keep) == 0:
                raise ValueError("The two tables share no gene; use genes='union' or check the gene ids.")
        else:
            keep = self._genes.union(other._genes, sort=False)
        left = _rows_or_zeros(self, keep)
        right = _rows_or_zeros(other, keep)
        vectors = left + right if how == "sum" else np.hstack([left, right])
        provenance = {
            "combined": how,
            "genes": genes,
            "parts": [_provenance_summary(self), _provenance_summary(other)],
        }
        return GeneEmbeddings(keep, vectors, provenance=provenance)

    def __add__(self, other: GeneEmbeddings) -> GeneEmbeddings:
        if not isinstance(other, GeneEmbeddings):
            return NotImplemented
        return self.combine(other, how="sum")

    # --------------------------------------------------------------- aligning
    def _unique_keys(self, table_type: str) -> tuple[np.ndarray, pd.Index, tuple[str, ...]]:
        """Rows kept, their keys (Ensembl versions stripped) and the keys dropped as duplicates."""
        from . import gene_ids

        table_keys = self._genes
        if table_type == "ensembl":
            table_keys = pd.Index(gene_ids.strip_version(np.asarray(table_keys)))
        # Two versions of one Ensembl id become one key: the first row is kept.
        first = ~table_keys.duplicated(keep="first")
        rows = np.flatnonzero(first)
        keys = table_keys[first]
        duplicates = tuple(
            f"{self._genes[i]} (kept {self._genes[rows[keys.get_loc(table_keys[i])]]})"
            for i in np.flatnonzero(~first)
        )
        if duplicates:
            logger.warning(
                "%d table keys are another version of an Ensembl id already in the table; the first row "
                "of each is used (e.g. %s)",
                len(duplicates),
                ", ".join(duplicates[:3]),
            )
        return rows, keys, duplicates

    def align(
        self,
        var_names: Sequence[str] | pd.Index,
        *,
        id_type: IdType = "auto",
        case_sensitive: bool = True,
        id_map: Mapping[str, str] | None = None,
        match: Match = "hgnc",
        min_coverage: float = 0.5,
    ) -> AlignedGeneEmbeddings:
        """Match the table to ``adata.var_names``: one row per variable, zeros where unmatched.

        Parameters
        ----------
        var_names
            The dataset's gene identifiers (symbols or Ensembl ids, with or without
            ``.version`` suffixes).
        id_type
            What ``var_names`` hold; ``"auto"`` decides by the majority (Ensembl pattern
            ``ENS*G00000000000``). The table's own ids are detected the same way.
        case_sensitive
            Symbols match exactly by default (as the originals); ``False`` also matches
            ``Cd3e`` to ``CD3E`` (exact and HGNC matches win).
        id_map
            Mapping used when the two sides use different id types: Ensembl id -> symbol
            (when the data has Ensembl ids and the table symbols) or symbol -> Ensembl id.
            Default: HGNC via :func:`scelmo.gene_ids.ensembl_to_symbol` /
            :func:`~scelmo.gene_ids.symbol_to_ensembl`.
        match
            ``"hgnc"`` (default) matches through HGNC's previous and alias symbols
            (:func:`scelmo.gene_ids.resolve_symbols`) as well, for tables such as GenePT's whose
            keys mix current symbols, aliases and previous symbols, and data annotated with
            older symbols. Per variable: its name as a key wins when it is a current symbol (or
            unknown to HGNC); a name HGNC knows as a previous or alias symbol takes the key of
            its gene's current symbol when the table has one (``IL8`` -> ``CXCL8``), else its
            own key; otherwise the key of the same gene, preferring its current symbol, then a
            previous symbol, then an alias, then the first in the table (``H3F3B`` ->
            ``H3-3B``). A table keyed by the data's own names matches as with ``"exact"``.
            ``"exact"`` matches names (or the ``id_map`` translation) only. Needs the HGNC table
            (``pip install 'scelmo[offline]'``); without it ``"hgnc"`` falls back to ``"exact"``
            with a warning.
        min_coverage
            Warn when fewer than this fraction of variables are matched.

        Returns
        -------
        The aligned matrix with a coverage report; :meth:`AlignedGeneEmbeddings.report` lists
        what was matched through previous or alias symbols, and table keys dropped because
        they are the same Ensembl id with another version (the first row is kept).

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> table = se.GeneEmbeddings(["CD3E", "MS4A1"], np.eye(2))
        >>> aligned = table.align(["MS4A1", "XYZ1", "CD3E"], match="exact", min_coverage=0)
        >>> aligned.n_matched, aligned.matrix[1].tolist()
        (2, [0.0, 0.0])

        Data with an older symbol (``H3F3B``, now ``H3-3B``) finds the table's current one:

        >>> table = se.GeneEmbeddings(["H3-3B", "CD3E"], np.eye(2))
        >>> table.align(["H3F3B", "CD3E"]).report()["hgnc_examples"]  # doctest: +SKIP
        ['H3F3B -> H3-3B (previous)']
        """
        from . import gene_ids

        var_index = pd.Index(np.asarray(var_names, dtype=object).astype(str))
        if len(var_index) == 0:
            raise ValueError("No variables to align: `var_names` is empty.")
        var_type = gene_ids.infer_id_type(var_index) if id_type == "auto" else id_type
        if var_type not in ("symbol", "ensembl"):
            raise ValueError(f"`id_type` must be 'auto', 'symbol' or 'ensembl', got {id_type!r}.")
        if match not in ("hgnc", "exact"):
            raise ValueError(f"`match` must be 'hgnc' or 'exact', got {match!r}.")
        table_type = gene_ids.infer_id_type(self._genes)

        rows, keys, duplicates = self._unique_keys(table_type)
        query = _query_ids(var_index, var_type, table_type, id_map)
        positions, kinds, used, note = _match_positions(keys, var_index, query, var_type, table_type, match)
        if not case_sensitive:
            _match_case_folded(keys, query, positions, kinds)
        matched = positions >= 0
        positions = np.where(matched, rows[np.maximum(positions, 0)], -1)
        n_matched = int(matched.sum())
        if n_matched == 0:
            raise ValueError(
                "No gene of the data matches the table. "
                f"Data ids look like {var_index[:3].tolist()} (read as {var_type}); "
                f"table ids look like {self._genes[:3].tolist()} (read as {table_type}). "
                "Pass `id_type=` if the detection is wrong, `case_sensitive=False` for mouse-style "
                "symbols, or `id_map=` to translate between id types."
            )
        # One gather and no temporary: unmatched rows take row 0, then are zeroed.
        matrix = self._vectors[np.maximum(positions, 0)]
        matrix[~matched] = 0
        aligned = AlignedGeneEmbeddings(
            var_names=var_index,
            matrix=matrix,
            matched=matched,
            table_genes=np.where(matched, np.asarray(self._genes)[np.maximum(positions, 0)], ""),
            var_id_type=var_type,
            table_id_type=table_type,
            provenance={**self.provenance, "content_hash": self.content_hash},
            match_kinds=kinds.astype(str),
            match=used,
            match_note=note,
            duplicate_table_keys=duplicates,
        )
        _report_alignment(aligned, min_coverage)
        return aligned


def _query_ids(
    var_index: pd.Index, var_type: str, table_type: str, id_map: Mapping[str, str] | None
) -> np.ndarray:
    """The data's ids as the table's kind of id (versions stripped; translated through ``id_map``)."""
    from . import gene_ids

    query = np.asarray(var_index)
    if var_type == "ensembl":
        query = gene_ids.strip_version(query)
    if var_type != table_type:
        if id_map is None:
            id_map = gene_ids.ensembl_to_symbol() if var_type == "ensembl" else gene_ids.symbol_to_ensembl()
        query = np.asarray([id_map.get(q, "") for q in query], dtype=object)
    return query


def _match_positions(
    keys: pd.Index, var_index: pd.Index, query: np.ndarray, var_type: str, table_type: str, match: str
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Table position per variable (-1: none), how it matched, the rule used and a note."""
    positions = _exact(keys, query)
    kinds = np.where(positions >= 0, "exact", "").astype(object)
    if match != "hgnc":
        return positions, kinds, match, ""
    try:
        _match_hgnc(keys, var_index, query, var_type, table_type, positions, kinds)
    except ImportError as err:
        if (positions < 0).any():
            warnings.warn(
                "Genes were matched by exact name only: the HGNC table for previous and alias symbols "
                f"is not available ({err}). Pass match='exact' to silence this.",
                UserWarning,
                stacklevel=3,
            )
        return positions, kinds, "exact", f"HGNC matching skipped: {err}"
    return positions, kinds, match, ""


def _report_alignment(aligned: AlignedGeneEmbeddings, min_coverage: float) -> None:
    """Warn below ``min_coverage``; log how many genes matched, and how many through HGNC."""
    n_matched, n_vars = aligned.n_matched, len(aligned.var_names)
    coverage = n_matched / n_vars
    if coverage < min_coverage:
        warnings.warn(
            f"Only {n_matched} of {n_vars} genes ({coverage:.1%}) are in the gene table; "
            f"unmatched genes contribute zero vectors. Examples: {aligned.unmatched[:5].tolist()}",
            UserWarning,
            stacklevel=3,
        )
    kinds = aligned.match_kinds
    through = 0 if kinds is None else int(np.isin(kinds, list(_HGNC_KINDS)).sum())
    logger.info(
        "aligned gene table: %d of %d genes matched (%.1f%%), %d through HGNC previous/alias symbols",
        n_matched,
        n_vars,
        100 * coverage,
        through,
    )


@dataclass(frozen=True, repr=False)
class AlignedGeneEmbeddings:
    """A gene table matched to a dataset's variables (one row per variable).

    Rows of unmatched variables are zero, as in the published methods. Made by
    :meth:`GeneEmbeddings.align`.

    Attributes
    ----------
    var_names
        The dataset's variables, in order.
    matrix
        float32 ``(n_vars, dim)``: the table row of each variable, zeros where unmatched.
    matched
        Boolean mask of variables that have a table row.
    table_genes
        The table gene each variable matched (``""`` where unmatched).
    var_id_type
        ``"symbol"`` or ``"ensembl"``: how the variables were read.
    table_id_type
        ``"symbol"`` or ``"ensembl"``: how the table's genes were read.
    provenance
        The table's provenance plus its ``content_hash``.
    match_kinds
        How each variable was matched: ``"exact"`` (its name, or its ``id_map`` translation),
        ``"previous"`` / ``"alias"`` (through an HGNC previous or alias symbol, of the variable
        or of the table key), ``"ensembl"`` (another name of the same Ensembl gene), ``"case"``
        (case-folded), ``""`` where unmatched.
    match
        The matching used: ``"hgnc"`` or ``"exact"``.
    match_note
        Why HGNC matching was skipped, if it was.
    duplicate_table_keys
        Table keys not used because they are another version of an Ensembl id kept before them.
    """

    var_names: pd.Index
    matrix: np.ndarray
    matched: np.ndarray
    table_genes: np.ndarray
    var_id_type: str
    table_id_type: str
    provenance: dict[str, Any] = field(default_factory=dict)
    match_kinds: np.ndarray | None = None
    match: str = "exact"
    match_note: str = ""
    duplicate_table_keys: tuple[str, ...] = ()

    @property
    def n_matched(self) -> int:
        """Number of variables with a table row."""
        return int(self.matched.sum())

    @property
    def coverage(self) -> float:
        """Fraction of variables with a table row."""
        return self.n_matched / len(self.var_names)

    @property
    def unmatched(self) -> pd.Index:
        """Variables without a table row."""
        return self.var_names[~self.matched]

    @property
    def matches(self) -> pd.DataFrame:
        """Per variable: the table key it took (``""`` if none) and how it was matched.

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> aligned = se.GeneEmbeddings(["A"], np.ones((1, 2))).align(["A", "B"], match="exact", min_coverage=0)
        >>> aligned.matches["how"].tolist()
        ['exact', '']
        """
        kinds = self.match_kinds
        if kinds is None:
            kinds = np.where(self.matched, "exact", "")
        return pd.DataFrame(
            {"table_gene": np.asarray(self.table_genes, dtype=str), "how": np.asarray(kinds, dtype=str)},
            index=self.var_names.copy(),
        )

    def report(self, *, max_listed: int = 50) -> dict[str, Any]:
        """Coverage summary for ``adata.uns`` (JSON/h5ad friendly).

        Besides coverage it says how genes were matched: ``matched_by`` counts each kind
        (see :attr:`match_kinds`), ``hgnc_examples`` lists variables matched through a
        previous or alias symbol or another name of the gene as ``"data name -> table key
        (kind)"``, and ``duplicate_table_keys`` the table keys dropped as another version of
        an Ensembl id.

        Examples
        --------
        >>> import numpy as np
        >>> import scelmo as se
        >>> table = se.GeneEmbeddings(["A"], np.ones((1, 2)))
        >>> table.align(["A", "B"], match="exact", min_coverage=0).report()["n_matched"]
        1
        """
        unmatched = self.unmatched
        matches = self.matches
        through = matches[matches["how"].isin(list(_HGNC_KINDS))]
        report = {
            "n_vars": len(self.var_names),
            "n_matched": self.n_matched,
            "coverage": round(self.coverage, 6),
            "n_unmatched": len(unmatched),
            "unmatched_examples": unmatched[:max_listed].tolist(),
            "var_id_type": self.var_id_type,
            "table_id_type": self.table_id_type,
            "match": self.match,
            "matched_by": {kind: int((matches["how"] == kind).sum()) for kind in _KINDS},
            "hgnc_examples": [
                f"{name} -> {row.table_gene} ({row.how})"
                for name, row in through.iloc[:max_listed].iterrows()
            ],
            "duplicate_table_keys": list(self.duplicate_table_keys[:max_listed]),
        }
        if self.match_note:
            report["match_note"] = self.match_note
        return report

    def __repr__(self) -> str:
        return (
            f"AlignedGeneEmbeddings({self.n_matched} of {len(self.var_names)} genes matched "
            f"({self.coverage:.1%}), dim {self.matrix.shape[1]})"
        )


def _suffix(name: str) -> str:
    """The format suffix of a file name (GenePT's 3072-d table is '....pickle.': that dot is no suffix)."""
    return Path(str(name).rstrip(".")).suffix


def _exact(keys: pd.Index, query: np.ndarray) -> np.ndarray:
    """Position of every query in the unique ``keys`` (-1 when absent or empty)."""
    positions = keys.get_indexer(pd.Index(query.astype(str)))
    positions[np.asarray(query == "")] = -1
    return positions


def _match_case_folded(keys: pd.Index, query: np.ndarray, positions: np.ndarray, kinds: np.ndarray) -> None:
    """Fill unmatched ``positions`` by case-insensitive equality (in place)."""
    missing = (positions < 0) & np.asarray(query != "")
    if not missing.any():
        return
    folded = pd.Series(np.arange(len(keys)), index=keys.str.upper())
    # The first table row wins when case-folding makes two table genes collide.
    folded = folded[~folded.index.duplicated(keep="first")]
    upper = pd.Index(query[missing].astype(str)).str.upper()
    found = folded.reindex(upper).fillna(-1).to_numpy(dtype=np.int64)
    positions[missing] = found
    kinds[np.flatnonzero(missing)[found >= 0]] = "case"


#: Kinds of matches, in the order reported; the last three go through HGNC's gene records.
_KINDS = ("exact", "case", "previous", "alias", "ensembl")
_HGNC_KINDS = frozenset(_KINDS[2:])
#: Rank of a table key among the keys of one gene: its current symbol first.
_KEY_RANK = {"current": 0, "symbol": 1, "ensembl": 1, "previous": 2, "alias": 3}


def _link(*hows: str) -> str:
    """The weakest link among how the two sides were resolved: alias < previous < same gene."""
    if "alias" in hows:
        return "alias"
    if "previous" in hows:
        return "previous"
    return "ensembl"


def _best_keys(keys: pd.Index) -> dict[str, tuple[int, str]]:
    """Ensembl id -> (position, how) of the best table key of that gene (see ``align``)."""
    from .gene_ids import resolve_symbols

    resolved = resolve_symbols(keys)
    best: dict[str, tuple[int, int, str]] = {}
    for position, (ensembl_id, symbol, how) in enumerate(
        zip(resolved["ensembl_id"], resolved["symbol"], resolved["how"], strict=True)
    ):
        if not ensembl_id:
            continue
        rank = _KEY_RANK["current"] if keys[position] == symbol else _KEY_RANK[how]
        # Ties go to the first key in the table: keys are visited in table order.
        if ensembl_id not in best or rank < best[ensembl_id][0]:
            best[ensembl_id] = (rank, position, how)
    return {gene: (position, how) for gene, (_, position, how) in best.items()}


def _match_hgnc(
    keys: pd.Index,
    var_index: pd.Index,
    query: np.ndarray,
    var_type: str,
    table_type: str,
    positions: np.ndarray,
    kinds: np.ndarray,
) -> None:
    """Match through HGNC previous and alias symbols (in place); see ``GeneEmbeddings.align``."""
    from .gene_ids import is_ensembl, resolve_symbols, strip_version

    if var_type == "ensembl" and table_type == "ensembl":
        return
    if var_type == "ensembl" and not (positions < 0).any():
        return
    if var_type == "symbol":
        resolved = resolve_symbols(var_index)
        genes = resolved["ensembl_id"].to_numpy(dtype=object)
        symbols = resolved["symbol"].to_numpy(dtype=object)
        hows = resolved["how"].to_numpy(dtype=object)
    else:
        genes = np.where(is_ensembl(var_index), strip_version(np.asarray(var_index)), "").astype(object)
        symbols = query
        hows = np.full(len(var_index), "ensembl", dtype=object)

    if table_type == "ensembl":
        # Symbols that are not current ones reach their gene through HGNC's records.
        missing = np.flatnonzero((positions < 0) & (genes != ""))
        found = keys.get_indexer(pd.Index(genes[missing].astype(str)))
        positions[missing] = found
        kinds[missing[found >= 0]] = [_link(h) for h in hows[missing[found >= 0]]]
        return

    key_positions = {key: i for i, key in enumerate(keys)}
    # A name HGNC knows only as a previous or alias symbol takes its gene's current symbol.
    older = np.flatnonzero(np.isin(hows, ["previous", "alias"]))
    for i in older:
        current = key_positions.get(symbols[i], -1)
        if current >= 0 and symbols[i] != var_index[i]:
            positions[i] = current
            kinds[i] = hows[i]
    missing = np.flatnonzero((positions < 0) & (genes != ""))
    if len(missing) == 0:
        return
    best = _best_keys(keys)
    for i in missing:
        hit = best.get(genes[i])
        if hit is not None:
            positions[i] = hit[0]
            kinds[i] = _link(hows[i], hit[1])


def _reason(err: BaseException) -> str:
    """``err`` as ``Type: message`` on one line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _rows_or_zeros(table: GeneEmbeddings, genes: pd.Index) -> np.ndarray:
    positions = table.genes.get_indexer(genes)
    rows = np.zeros((len(genes), table.dim), dtype=np.float32)
    found = positions >= 0
    rows[found] = table.vectors[positions[found]]
    return rows


def _provenance_summary(table: GeneEmbeddings) -> dict[str, Any]:
    return {**table.provenance, "content_hash": table.content_hash, "n_genes": len(table), "dim": table.dim}
