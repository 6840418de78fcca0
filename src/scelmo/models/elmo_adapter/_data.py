"""Data helpers of the trainable models: expression checks, splits, blocks, gene-table alignment."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..._matrix import block_values, iter_row_blocks
from ...gene_embeddings import GeneEmbeddings


def expression_matrix(adata: AnnData, layer: str | None) -> Any:
    """``adata.layers[layer]`` or ``adata.X``, with an error naming the available layers."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass `layer=` with the expression matrix.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in adata.layers; available: {list(adata.layers)}.")
    return adata.layers[layer]


def check_expression(matrix: Any, *, where: str, chunk_size: int = 8192) -> None:
    """Refuse NaN/inf and negative values (scaled data): the models need counts or log-expression."""
    for start, _, block in iter_row_blocks(matrix, chunk_size):
        values = block_values(block)
        if values.size == 0:
            continue
        if not np.isfinite(values).all():
            raise ValueError(f"{where} contains NaN or infinite values (cells {start}+); fix or drop them.")
        if values.min() < 0:
            raise ValueError(
                f"{where} has negative values, so it is not count or log-normalised data (is it "
                "scaled with sc.pp.scale?). Set up the model on counts or log-normalised expression, "
                "e.g. `adata.layers['log1p'] = adata.raw.X` and `layer='log1p'`."
            )


def check_obs_key(adata: AnnData, key: str | None, what: str) -> None:
    """A clear error when ``adata.obs`` lacks ``key``."""
    if key is not None and key not in adata.obs:
        raise KeyError(
            f"{what} {key!r} is not a column of adata.obs; available columns: {list(adata.obs.columns)}."
        )


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


def dense_blocks(matrix: Any, indices: np.ndarray | None, batch_size: int) -> Iterator[np.ndarray]:
    """Dense float32 row blocks of ``matrix`` (optionally of the rows ``indices``, in that order)."""
    if indices is None:
        for _, _, block in iter_row_blocks(matrix, batch_size):
            yield block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        return
    for start in range(0, len(indices), batch_size):
        rows = np.asarray(indices[start : start + batch_size])
        block = matrix[rows]
        block = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        yield np.asarray(block, dtype=np.float32)


def align_to_variables(
    gene_embeddings: GeneEmbeddings,
    var_names: Sequence[str] | pd.Index,
    *,
    id_type: str = "auto",
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
