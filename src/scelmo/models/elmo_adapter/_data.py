"""Data helpers of the adapter: the validation split, blocks of cells, the gene table keyed by the variables."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from scelmo._matrix import iter_row_blocks
from scelmo.gene_embeddings import GeneEmbeddings, IdType


def stratified_split(codes: np.ndarray, validation_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation cell indices, stratified by ``codes``, reproducible from ``seed``.

    Each class gives ``round(validation_size * n)`` cells to validation, keeping at least one
    cell of every class for training.
    """
    if not 0 <= validation_size < 1:
        raise ValueError(f"`validation_size` must be in [0, 1), got {validation_size}.")
    rng = np.random.default_rng(seed)
    train, validation = [], []
    for code in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == code))
        n_val = min(round(validation_size * len(members)), len(members) - 1)
        validation.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(validation))


def dense_blocks(
    matrix: Any, indices: np.ndarray | None, batch_size: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, block)``: dense float32 row blocks of ``matrix`` (optionally of the rows ``indices``, in that order).

    ``start`` is the block's first row: in ``matrix``, or with ``indices`` a position in ``indices``.
    """
    if indices is None:
        for start, _, block in iter_row_blocks(matrix, batch_size):
            yield start, block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        return
    for start in range(0, len(indices), batch_size):
        rows = np.asarray(indices[start : start + batch_size])
        block = matrix[rows]
        block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        yield start, np.asarray(block, dtype=np.float32)


def align_to_variables(
    gene_embeddings: GeneEmbeddings,
    var_names: Sequence[str] | pd.Index,
    *,
    id_type: IdType = "auto",
    case_sensitive: bool = True,
    min_coverage: float = 0.5,
) -> tuple[GeneEmbeddings, np.ndarray, np.ndarray]:
    """The table restricted to and keyed by the variables it matches, plus the aligned matrix and mask.

    Keying the kept rows by the dataset's own variable names makes the stored table small (only
    the matched genes) and re-aligns exactly when a saved model is loaded.
    """
    if not isinstance(gene_embeddings, GeneEmbeddings):
        raise TypeError(
            f"`gene_embeddings` must be a scelmo.GeneEmbeddings, got {type(gene_embeddings).__name__}; "
            "wrap a dict with GeneEmbeddings.from_dict(...)."
        )
    var_index = pd.Index(np.asarray(var_names, dtype=object).astype(str))
    if var_index.has_duplicates:
        dupes = var_index[var_index.duplicated()].unique()[:5].tolist()
        raise ValueError(
            f"adata.var_names must be unique (duplicated: {dupes}); call adata.var_names_make_unique()."
        )
    positions = var_index.get_indexer(gene_embeddings.genes)
    if len(positions) and (positions >= 0).all():
        # Already keyed by these variables (a saved model being loaded): exact, no id matching.
        matrix = np.zeros((len(var_index), gene_embeddings.dim), dtype=np.float32)
        matrix[positions] = gene_embeddings.vectors
        matched = np.zeros(len(var_index), dtype=bool)
        matched[positions] = True
        return gene_embeddings, matrix, matched
    aligned = gene_embeddings.align(
        var_index, id_type=id_type, case_sensitive=case_sensitive, min_coverage=min_coverage
    )
    provenance = dict(gene_embeddings.provenance)
    provenance.setdefault("source_content_hash", gene_embeddings.content_hash)
    keyed = GeneEmbeddings(var_index[aligned.matched], aligned.matrix[aligned.matched], provenance=provenance)
    return keyed, aligned.matrix, aligned.matched
