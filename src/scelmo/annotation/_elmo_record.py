"""What zero-shot elmo reads from an AnnData: the ``elmo_embed`` record, the matrix or embeddings, provenance.

The record :func:`scelmo.tl.elmo_embed` left in ``uns[use_rep]`` (:class:`scelmo._records.ElmoRecord`)
says which matrix the cells were embedded from (read again for ``score="genes"`` unless
``layer``/``use_raw`` say otherwise) and which gene table embedded them (checked against the
table passed, and the source of the encoder for ``score="cell"`` without a table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from anndata import AnnData

from scelmo._anndata import expression_matrix
from scelmo._matrix import is_dask
from scelmo._records import ElmoRecord
from scelmo.gene_embeddings import GeneEmbeddings

from ._smoothing import CellGraph, cell_graph

if TYPE_CHECKING:
    from ._zeroshot_options import ElmoZeroShotOptions

__all__ = ["ElmoInputs", "elmo_inputs"]


@dataclass(frozen=True)
class ElmoInputs:
    """The plain inputs of the elmo scorer, read from an AnnData.

    Attributes
    ----------
    provenance
        The gene table's provenance (with its ``content_hash``): what says its encoder.
    table
        The gene table (``score="genes"``; ``None`` for ``score="cell"`` without one).
    matrix, var_names
        The expression matrix and its genes (``score="genes"``); a dask matrix stays lazy.
    cells
        The cell embeddings (``score="cell"``): an array, or a dask array left lazy.
    source
        What was read, as ``uns[key]['params']['matrix']`` records it: ``"X"``, ``"raw"``,
        ``"layers['name']"`` or ``"obsm['X_elmo']"``.
    graph
        The neighbour graph the scores are smoothed over (``smooth``, ``score="genes"``), or ``None``.
    """

    provenance: dict[str, Any]
    table: GeneEmbeddings | None
    matrix: Any
    var_names: np.ndarray | None
    cells: np.ndarray | None
    source: str
    graph: CellGraph | None = None


def _record(adata: AnnData, use_rep: str) -> ElmoRecord | None:
    try:
        return ElmoRecord.read(adata, use_rep)
    except KeyError:
        return None


def _provenance(
    gene_embeddings: GeneEmbeddings | None, record: ElmoRecord | None, options: ElmoZeroShotOptions
) -> dict[str, Any]:
    """The gene table's provenance, after checking the table against the record of the cells."""
    recorded_table = dict(record.gene_table) if record is not None else {}
    use_rep = options.use_rep
    if gene_embeddings is not None:
        if not isinstance(gene_embeddings, GeneEmbeddings):
            raise TypeError(
                f"`gene_embeddings` must be a scelmo.GeneEmbeddings, got {type(gene_embeddings).__name__}."
            )
        recorded_hash = recorded_table.get("content_hash")
        if options.score == "cell" and recorded_hash and recorded_hash != gene_embeddings.content_hash:
            raise ValueError(
                f"obsm[{use_rep!r}] was embedded with a different gene table (content hash "
                f"{recorded_hash[:12]}...) than the one passed ({gene_embeddings.content_hash[:12]}...). "
                "Pass the table used by elmo_embed, or re-run scelmo.tl.elmo_embed with this one."
            )
        return {**gene_embeddings.provenance, "content_hash": gene_embeddings.content_hash}
    if options.score == "genes":
        raise ValueError(
            "score='genes' needs the gene table: pass gene_embeddings= (the table given to elmo_embed), "
            "or use score='cell' to compare the cell embeddings in obsm directly."
        )
    if not recorded_table:
        raise ValueError(
            f"adata.uns[{use_rep!r}]['gene_table'] is missing, so the encoder of the gene table is "
            "unknown. Run scelmo.tl.elmo_embed first, or pass gene_embeddings=."
        )
    return recorded_table


def elmo_inputs(
    adata: AnnData, gene_embeddings: GeneEmbeddings | None, options: ElmoZeroShotOptions
) -> ElmoInputs:
    """Read what the elmo scorer needs from ``adata``, checking the gene table against the cells' record.

    Parameters
    ----------
    adata
        The cells (log-normalised expression; ``obsm[use_rep]`` for ``score="cell"``).
    gene_embeddings
        The gene table, or ``None`` (``score="cell"``: the table recorded by ``elmo_embed``).
    options
        ``score``, ``use_rep``, ``layer`` and ``use_raw`` are read.

    Returns
    -------
    The :class:`ElmoInputs`.

    Raises
    ------
    ValueError
        When the table differs from the one the cells were embedded with (``score="cell"``),
        or no table is known.
    KeyError
        When ``obsm[use_rep]`` is missing (``score="cell"``).

    Examples
    --------
    >>> import scanpy as sc
    >>> from scelmo.annotation._elmo_record import elmo_inputs
    >>> from scelmo.annotation._zeroshot_options import ElmoZeroShotOptions
    >>> inputs = elmo_inputs(sc.datasets.pbmc68k_reduced(), table, ElmoZeroShotOptions())  # doctest: +SKIP
    >>> inputs.source  # doctest: +SKIP
    'raw'
    """
    use_rep = options.use_rep
    record = _record(adata, use_rep)
    provenance = _provenance(gene_embeddings, record, options)
    if options.score == "cell":
        if use_rep not in adata.obsm:
            raise KeyError(
                f"adata.obsm[{use_rep!r}] not found: run scelmo.tl.elmo_embed(adata, table, key_added={use_rep!r}) "
                "first, or use score='genes' with gene_embeddings=."
            )
        cells = adata.obsm[use_rep]
        # a dask array (elmo_embed on a dask matrix) stays lazy: cell_scores runs on its row chunks
        cells = cells if is_dask(cells) else np.asarray(cells)
        return ElmoInputs(provenance, gene_embeddings, None, None, cells, f"obsm[{use_rep!r}]")
    layer, use_raw = options.layer, options.use_raw
    if layer is None and use_raw is None and record is not None and record.matrix_source:
        # the matrix elmo_embed read, when this AnnData still has it
        if record.layer is not None and record.layer in adata.layers:
            layer = record.layer
        elif record.matrix_source in ("raw", "X"):
            use_raw = record.use_raw
    expression = expression_matrix(adata, layer=layer, use_raw=use_raw)
    graph = (
        cell_graph(adata, expression.matrix, expression.source, neighbors_key=options.neighbors_key)
        if options.smooth
        else None
    )
    return ElmoInputs(
        provenance,
        gene_embeddings,
        expression.matrix,
        np.asarray(expression.var_names),
        None,
        expression.source,
        graph,
    )
