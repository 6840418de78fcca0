"""The Geneformer V1 gene dictionaries that LangCell's cell encoder was trained with.

They are published as pickles. Each is unpickled once, after :func:`fetch` verified its
sha256, and re-encoded as JSON under ``data_dir()/derived/`` (``<entry>-<sha256[:16]>.json``,
a plain JSON object); later sessions read only that JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ._derived import load_derived
from ._hashing import file_sha256
from ._pickle import read_trusted_pickle
from ._registry import data_dir, fetch

TOKEN_DICTIONARY = "geneformer_v1_token_dictionary"
GENE_MEDIANS = "geneformer_v1_gene_median_dictionary"
GENE_NAMES = "geneformer_v1_gene_name_id_dict"


@dataclass(frozen=True, eq=False)
class GeneformerDictionaries:
    """Geneformer V1 vocabularies (as used by LangCell).

    The instance is shared by every caller in the process: copy a dictionary before changing it.

    Attributes
    ----------
    token_ids
        ``<pad>`` -> 0, ``<mask>`` -> 1, Ensembl gene id -> token id (2..25425); 25,426 entries.
        LangCell appends ``<cls>`` = ``len(token_ids)`` at run time.
    gene_medians
        Ensembl gene id -> non-zero median expression over Genecorpus-30M (25,424 genes), used
        to normalise counts before ranking.
    symbol_to_ensembl
        Gene symbol -> Ensembl gene id (40,248 symbols).
    """

    token_ids: dict[str, int]
    gene_medians: dict[str, float]
    symbol_to_ensembl: dict[str, str]

    def __repr__(self) -> str:
        return (
            f"GeneformerDictionaries({len(self.token_ids)} tokens, {len(self.gene_medians)} gene medians, "
            f"{len(self.symbol_to_ensembl)} symbols)"
        )


def _write_json(obj: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")), encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _converted(name: str, path: Path, sha256: str, value: Callable[[Any], Any]) -> dict[str, Any]:
    def build() -> dict[str, Any]:
        raw = read_trusted_pickle(path, sha256=sha256)
        if not isinstance(raw, dict):
            raise ValueError(f"{path} should hold a dict, but holds a {type(raw).__name__}.")
        # numpy scalars (int16 token ids, float64 medians) become plain Python numbers for JSON.
        return {str(key): value(item) for key, item in raw.items()}

    return load_derived(name, sha256, ".json", build=build, write=_write_json, read=_read_json)


@lru_cache(maxsize=4)
def _load(folder: str, sources: tuple[tuple[str, str, str], ...]) -> GeneformerDictionaries:
    # `folder` is part of the cache key only: a new data folder has its own derived files.
    del folder
    converters: dict[str, Callable[[Any], Any]] = {
        TOKEN_DICTIONARY: int,
        GENE_MEDIANS: float,
        GENE_NAMES: str,
    }
    loaded = {name: _converted(name, Path(path), sha, converters[name]) for name, path, sha in sources}
    tokens = loaded[TOKEN_DICTIONARY]
    if tokens.get("<pad>") != 0 or tokens.get("<mask>") != 1:
        raise ValueError(
            f"The token dictionary has <pad>={tokens.get('<pad>')} and <mask>={tokens.get('<mask>')}; "
            "Geneformer V1 uses 0 and 1. The registered file is not the Geneformer V1 dictionary."
        )
    return GeneformerDictionaries(
        token_ids=tokens,
        gene_medians=loaded[GENE_MEDIANS],
        symbol_to_ensembl=loaded[GENE_NAMES],
    )


def geneformer_dictionaries(*, progressbar: bool = True) -> GeneformerDictionaries:
    """The Geneformer V1 token ids, gene medians and symbol -> Ensembl map (hash-verified).

    The three pickles are fetched (see :func:`fetch`), unpickled only after their sha256
    matched, and converted once to JSON in ``data_dir()/derived/``, named after the source
    hash; later calls read the JSON, and the result is cached in the process.

    Parameters
    ----------
    progressbar
        Show a progress bar if the files have to be downloaded.

    Returns
    -------
    The three dictionaries.

    Examples
    --------
    >>> import scelmo as se
    >>> vocab = se.datasets.geneformer_dictionaries()  # doctest: +SKIP
    >>> vocab.token_ids["<pad>"], vocab.token_ids["<mask>"], len(vocab.token_ids)  # doctest: +SKIP
    (0, 1, 25426)
    >>> vocab.symbol_to_ensembl["CD3E"]  # doctest: +SKIP
    'ENSG00000198851'
    """
    sources = []
    for name in (TOKEN_DICTIONARY, GENE_MEDIANS, GENE_NAMES):
        path = fetch(name, progressbar=progressbar)
        sources.append((name, str(path), file_sha256(path)))
    return _load(str(data_dir()), tuple(sources))
