"""What drove a cell's label: the genes or the reference cells behind an annotation, as a tidy frame.

Each explanation recomputes the method's score of the chosen cells from what ``uns[key]``
records and the inputs passed again (gene table, reference, model), refuses inputs that differ
from the recorded ones, and checks that the recomputed probabilities are the ones in
``obsm[key + '_probs']``:

``elmo`` (``score="genes"``)
    A cell's class score is linear in its standardised expression,
    ``score[c, k] = sum_g z[c, g] * w[g, k] / s_k`` (``w``: the class's final signature weights
    after refinement and rematching; ``s_k``: the standard deviation of the class's scores over
    the cells with ``scale``, else 1). A gene's contribution is its term
    ``z[c, g] * w[g, k] / s_k``: the terms of all genes sum to the score, and the probabilities
    are ``softmax(score / temperature)``.
``elmo`` (``score="cell"``)
    The cell embedding is a weighted average of table rows, ``e_c = sum_g a[c, g] E_g``
    (``elmo_embed``'s ``wa``/``aa`` weights), so the cosine of the centred embedding
    ``u_c = e_c - mean(e)`` to the class vector ``v_k`` is a sum over genes:
    ``(a[c, g] - mean_c' a[c', g]) * (E_g . v_k) / |u_c|``; with ``scale`` each gene's share of
    the class's mean cosine over the cells is taken off its term and it is divided by the
    cosines' standard deviation. The terms sum to the score up to the float32 rounding of
    ``obsm[use_rep]``, and a cell whose stored embedding is not this average is refused.
``knn``
    A neighbour's contribution is its share of the vote (1/k, or ``(1/d) / sum(1/d)`` with
    ``weights="distance"``): the shares of the neighbours of one class sum to that class's
    probability.
``langcell``
    Gradient x input of the class probability on each gene token's input embedding
    (:mod:`scelmo.models.langcell._explain`): a first-order estimate, not a decomposition.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo._records import AnnotationRecord
from scelmo.gene_embeddings import GeneEmbeddings

if TYPE_CHECKING:
    from scelmo.models.langcell import LangCell
    from scelmo.text import TextEncoder

__all__ = ["COLUMNS", "explain", "select_cells"]

#: Columns of every explanation frame, in this order.
COLUMNS = ["cell", "label", "class", "kind", "feature", "contribution", "rank", "score", "distance"]
#: Largest difference tolerated between recomputed and recorded probabilities (they are float32).
_ATOL = 1e-4
#: The same for LangCell scores made under bf16/fp16 autocast (explained in float32).
_ATOL_HALF = 5e-2
_ELMO_OPTIONS = (
    "score",
    "contrast",
    "n_genes",
    "refine",
    "gene_mentions",
    "mention_weight",
    "subtype_mentions",
    "named_share",
    "rematch",
    "smooth",
    "neighbors_key",
    "centre",
    "scale",
    "abstain",
    "abstain_level",
    "unspell",
    "temperature",
)


#: Options added after records were first written, with the value that matches what ran before them.
_ADDED_LATER = {"smooth": 0, "named_share": 0.0, "subtype_mentions": False}


def select_cells(adata: AnnData, cells: Any) -> np.ndarray:
    """Row positions of ``cells``: ``None`` (all), a name, names, a boolean mask or ``{obs column: value(s)}``.

    Examples
    --------
    >>> import anndata as ad, numpy as np, pandas as pd
    >>> from scelmo.annotation._explain import select_cells
    >>> adata = ad.AnnData(np.zeros((3, 1)), obs=pd.DataFrame({"t": ["a", "b", "a"]}, index=["x", "y", "z"]))
    >>> select_cells(adata, {"t": "a"}).tolist(), select_cells(adata, ["z", "y"]).tolist()
    ([0, 2], [2, 1])
    """
    if cells is None:
        return np.arange(adata.n_obs)
    if isinstance(cells, Mapping):
        keep = np.ones(adata.n_obs, dtype=bool)
        for column, values in cells.items():
            if column not in adata.obs:
                raise KeyError(f"adata.obs[{column!r}] not found; available: {list(adata.obs.columns)}.")
            values = [values] if isinstance(values, str) or not isinstance(values, Sequence) else values
            keep &= adata.obs[column].isin(values).to_numpy()
        return np.flatnonzero(keep)
    if isinstance(cells, str):
        cells = [cells]
    array = np.asarray(cells)
    if array.dtype == bool:
        if array.shape != (adata.n_obs,):
            raise ValueError(f"A boolean mask of cells needs {adata.n_obs} entries, got shape {array.shape}.")
        return np.flatnonzero(array)
    found = adata.obs_names.get_indexer(array.astype(str))
    if (found < 0).any():
        missing = array[found < 0][:5].tolist()
        raise KeyError(
            f"Cells {missing} are not in adata.obs_names; pass names, a boolean mask or {{column: value}}."
        )
    return found


def _targets(
    adata: AnnData, key: str, record: AnnotationRecord, rows: np.ndarray, classes: Any
) -> list[np.ndarray]:
    """Per selected cell, the class indices to explain (default: its label, else its most probable class)."""
    names = record.classes
    if classes is None:
        probs = np.asarray(adata.obsm[f"{key}_probs"])[rows]
        labels = adata.obs[key].astype(str).to_numpy()[rows]
        out = []
        for label, p in zip(labels, probs, strict=True):
            if label in names:
                out.append(np.array([names.index(label)]))
            else:  # "unknown" or an ontology ancestor: the class that came first
                out.append(
                    np.array([int(np.nanargmax(p))]) if np.isfinite(p).any() else np.zeros(0, dtype=int)
                )
        return out
    wanted = (
        names
        if isinstance(classes, str) and classes == "all"
        else [classes]
        if isinstance(classes, str)
        else list(classes)
    )
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise ValueError(f"Classes {unknown} are not classes of uns[{key!r}]: {names} (or classes='all').")
    chosen = np.array([names.index(c) for c in wanted], dtype=np.int64)
    return [chosen] * len(rows)


def _frame(records: list[dict[str, Any]], n_top: int | None) -> pd.DataFrame:
    """The tidy frame: ranked within (cell, class) by contribution, largest first."""
    frame = pd.DataFrame.from_records(records, columns=COLUMNS)
    if frame.empty:
        return frame
    frame = frame.sort_values(["cell", "class", "contribution"], ascending=[True, True, False], kind="stable")
    frame["rank"] = frame.groupby(["cell", "class"], sort=False).cumcount() + 1
    if n_top is not None:
        frame = frame[frame["rank"] <= n_top]
    order = {name: i for i, name in enumerate(pd.unique(frame["cell"]))}
    frame = frame.sort_values(
        ["cell", "class", "rank"], key=lambda s: s.map(order) if s.name == "cell" else s
    )
    return frame.reset_index(drop=True)


def _check_probs(
    adata: AnnData, key: str, rows: np.ndarray, probs: np.ndarray, what: str, atol: float = _ATOL
) -> None:
    recorded = np.asarray(adata.obsm[f"{key}_probs"], dtype=np.float64)[rows]
    both = np.isfinite(recorded).all(axis=1) & np.isfinite(probs).all(axis=1)
    bad = both & ~np.isclose(probs, recorded, atol=atol, rtol=0).all(axis=1)
    if bad.any():
        names = adata.obs_names[rows[bad]][:5].tolist()
        raise ValueError(
            f"The {what} recomputed now do not give the probabilities in obsm[{key + '_probs'!r}] for "
            f"{int(bad.sum())} of {len(rows)} cells (e.g. {names}): the inputs differ from those of the "
            "annotation. Pass the same gene table, reference or model, on the same cells, or annotate again."
        )


# --- elmo ----------------------------------------------------------------------------------


def _elmo_options(record: AnnotationRecord) -> Any:
    from ._zeroshot_options import ElmoZeroShotOptions

    params = record.params
    # None: the option did not apply; missing: the record predates the option, which was off then
    given = {name: params[name] for name in _ELMO_OPTIONS if params.get(name) is not None}
    given.update({name: off for name, off in _ADDED_LATER.items() if name not in params})
    matrix = str(params.get("matrix", ""))
    layer = re.fullmatch(r"layers\[(['\"])(.+)\1\]", matrix)
    if layer:
        given["layer"] = layer.group(2)
    elif matrix in ("raw", "X"):
        given["use_raw"] = matrix == "raw"
    return ElmoZeroShotOptions(**given)


def _checked_table(record: AnnotationRecord, key: str, gene_embeddings: Any) -> GeneEmbeddings:
    if not isinstance(gene_embeddings, GeneEmbeddings):
        raise TypeError(
            f"Explaining uns[{key!r}] (elmo) needs gene_embeddings=: the scelmo.GeneEmbeddings given to "
            f"zeroshot_annotate, got {type(gene_embeddings).__name__}."
        )
    recorded = (record.provenance.get("gene_table") or {}).get("content_hash")
    if recorded and recorded != gene_embeddings.content_hash:
        raise ValueError(
            f"uns[{key!r}] was computed with a gene table of content hash {recorded[:12]}..., not this one "
            f"({gene_embeddings.content_hash[:12]}...): pass the table given to zeroshot_annotate."
        )
    return gene_embeddings


def elmo_weights(
    adata: AnnData, record: AnnotationRecord, table: GeneEmbeddings, encoder: TextEncoder | str | None
) -> tuple[Any, np.ndarray, np.ndarray, Any, Any]:
    """The final signature weights ``(genes, classes)`` of a recorded elmo annotation, recomputed.

    The computation of :func:`scelmo.annotation._elmo_genes.scored_signatures` itself. Returns
    ``(standardised, var_names, weights, options, graph)``; ``graph`` is the neighbour graph the
    scores were smoothed over, or ``None``.
    """
    from ._elmo_genes import scored_signatures
    from ._elmo_record import elmo_inputs
    from ._elmo_text import class_vectors, resolve_encoder

    options = _elmo_options(record)
    inputs = elmo_inputs(adata, table, options)
    classes, texts = record.classes, {c: list(record.texts[c]) for c in record.classes}
    text_encoder = resolve_encoder(inputs.provenance, encoder)
    vectors = class_vectors(text_encoder, texts, classes, cache=options.cache, cache_dir=options.cache_dir)
    assert inputs.var_names is not None  # elmo_inputs reads the genes for the gene score
    # abstention changes no weight: its tests (random signatures, presence) are not run again
    scoring = dataclasses.replace(options, abstain=False)
    standardised, scored, _ = scored_signatures(inputs, vectors, classes, texts, text_encoder, scoring)
    graph = inputs.graph if options.smooth else None
    return standardised, inputs.var_names, scored.weights, options, graph


def _smoothed_terms(
    standardised: Any, weights: np.ndarray, used: np.ndarray, graph: Any, rounds: int, scale: bool
) -> tuple[np.ndarray, np.ndarray, Callable[[int], np.ndarray]]:
    """Scores, the per-gene share of their mean over cells, and each cell's (smoothed) standardised genes.

    Without smoothing a cell's term for gene ``g`` reads its own standardised expression; with
    it, the same expression averaged over the cells its smoothed score is read from, so the
    terms still sum to the score.
    """
    from ._smoothing import smooth_scores, smoothing_weights

    scores = standardised.times(weights)
    residual = np.zeros(weights.shape[0])
    if not rounds:
        if scale:
            residual = standardised.group_means(np.zeros(standardised.n_cells, dtype=np.int64), 1)[0]
        return scores, residual, lambda row: standardised.columns(used, rows=np.array([row]))[0]
    scores = smooth_scores(scores, graph, rounds)
    columns = standardised.columns(used)
    n_cells = standardised.n_cells
    if scale:
        residual[used] = smoothing_weights(graph, np.full(n_cells, 1.0 / n_cells), rounds) @ columns

    def cell(row: int) -> np.ndarray:
        start = np.zeros(n_cells)
        start[row] = 1.0
        return smoothing_weights(graph, start, rounds) @ columns

    return scores, residual, cell


def _explain_elmo(
    adata: AnnData,
    key: str,
    record: AnnotationRecord,
    rows: np.ndarray,
    targets: list[np.ndarray],
    gene_embeddings: GeneEmbeddings | None,
    encoder: TextEncoder | str | None,
) -> list[dict[str, Any]]:
    from ._elmo_zeroshot import softmax

    table = _checked_table(record, key, gene_embeddings)
    if record.params.get("score", "genes") == "cell":
        return _explain_elmo_cells(adata, key, record, rows, targets, table, encoder)
    standardised, var_names, weights, options, graph = elmo_weights(adata, record, table, encoder)
    used = np.flatnonzero((weights != 0).any(axis=1))
    # With `scale` the runner subtracts each class's mean score over the cells (without
    # smoothing: 0 in exact arithmetic, a rounding residual of the per-gene means in practice).
    # Each gene's share of it is taken from its term, so the terms sum to the score.
    scores, residual, cell_genes = _smoothed_terms(
        standardised, weights, used, graph, options.smooth if graph is not None else 0, options.scale
    )
    sd = scores.std(axis=0) if options.scale else np.ones(weights.shape[1])
    sd = np.where(sd > 1e-12, sd, 1.0)
    final = (scores - residual @ weights) / sd
    absent = set(adata.uns[key].get("absent", []))
    present = np.array([c not in absent for c in record.classes])
    logits = np.where(present[None, :], final, -np.inf) if present.any() else final
    _check_probs(adata, key, rows, softmax(logits[rows], options.resolved_temperature), "gene signatures")
    labels = adata.obs[key].astype(str).to_numpy()
    records = []
    for row, classes in zip(rows, targets, strict=True):
        z = cell_genes(row) - residual[used]
        for k in classes:
            mine = weights[used, k] != 0
            terms = z[mine] * weights[used[mine], k] / sd[k]
            for gene, term in zip(var_names[used[mine]], terms, strict=True):
                records.append(
                    dict(
                        cell=adata.obs_names[row],
                        label=labels[row],
                        kind="gene",
                        feature=str(gene),
                        contribution=float(term),
                        score=float(final[row, k]),
                        distance=np.nan,
                        **{"class": record.classes[k]},
                    )
                )
    return records


def _gene_weights(
    adata: AnnData, use_rep: str, table: GeneEmbeddings
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """``elmo_embed``'s gene weights ``a = scale * x`` (``obsm[use_rep] = a @ E``): ``(x, scale, E, genes)``."""
    from scelmo._anndata import expression_matrix
    from scelmo._records import ElmoRecord

    embedded = ElmoRecord.read(adata, use_rep)
    recorded = embedded.gene_table.get("content_hash")
    if recorded and recorded != table.content_hash:
        raise ValueError(
            f"obsm[{use_rep!r}] was embedded with another gene table (content hash {recorded[:12]}...): pass "
            "the table given to elmo_embed."
        )
    expression = expression_matrix(adata, layer=embedded.layer, use_raw=embedded.use_raw)
    aligned = table.align(expression.var_names, min_coverage=0.0)
    matrix = expression.matrix
    if embedded.params.get("mode", "wa") == "aa":
        scale = np.full(matrix.shape[0], 1.0 / matrix.shape[1])
    else:
        part = matrix[:, aligned.matched] if embedded.params.get("renormalize") else matrix
        totals = np.asarray(part.sum(axis=1, dtype=np.float64)).ravel()
        scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    return matrix, scale, aligned.matrix.astype(np.float64), np.asarray(expression.var_names)


def _explain_elmo_cells(
    adata: AnnData,
    key: str,
    record: AnnotationRecord,
    rows: np.ndarray,
    targets: list[np.ndarray],
    table: GeneEmbeddings,
    encoder: TextEncoder | str | None,
) -> list[dict[str, Any]]:
    """``score="cell"``: the cosine of the centred embedding ``u_c = sum_g (a[c, g] - mean a[:, g]) E_g`` to ``v_k``."""
    from ._elmo_cells import cell_scores
    from ._elmo_text import class_vectors, resolve_encoder
    from ._elmo_zeroshot import softmax

    options = _elmo_options(record)
    use_rep = str(record.params.get("use_rep", "X_elmo"))
    matrix, scale, rows_e, names = _gene_weights(adata, use_rep, table)
    texts = {c: list(record.texts[c]) for c in record.classes}
    vectors = class_vectors(
        resolve_encoder({**table.provenance}, encoder), texts, record.classes, cache=options.cache
    )
    cells = np.asarray(adata.obsm[use_rep], dtype=np.float64)
    centre = cells.mean(axis=0) if options.centre else np.zeros(cells.shape[1])
    norms = np.maximum(np.linalg.norm(cells - centre, axis=1), 1e-12)
    n = matrix.shape[0]
    mean_a = np.asarray(matrix.T @ scale).ravel() / n if options.centre else np.zeros(matrix.shape[1])
    cosines = cell_scores(cells, vectors, centre=options.centre)
    sd, offset = np.ones(len(vectors)), np.zeros(matrix.shape[1])
    if options.scale:
        sd = np.where(cosines.std(axis=0) > 1e-12, cosines.std(axis=0), 1.0)
        # the mean cosine over cells, gene by gene: mean_c (a[c, g] - mean a[:, g]) / |u_c|
        offset = (np.asarray(matrix.T @ (scale / norms)).ravel() - mean_a * np.sum(1 / norms)) / n
    final = (cosines - cosines.mean(axis=0)) / sd if options.scale else cosines
    _check_probs(adata, key, rows, softmax(final[rows], options.resolved_temperature), "cell embeddings")
    projections = rows_e @ vectors.T  # (genes, classes): each gene's table row along each class text
    labels = adata.obs[key].astype(str).to_numpy()
    records = []
    for row, classes in zip(rows, targets, strict=True):
        x = matrix[row]
        a = (np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64).ravel()) * scale[row]
        if not np.allclose(a @ rows_e, cells[row], rtol=1e-4, atol=1e-5 * (1 + np.abs(cells[row]).max())):
            raise ValueError(
                f"obsm[{use_rep!r}] of cell {adata.obs_names[row]!r} is not the gene-weighted average of this table "
                "on this matrix: pass the table given to elmo_embed, or embed again."
            )
        shares = (a - mean_a) / norms[row] - offset
        for k in classes:
            terms = shares * projections[:, k] / sd[k]
            for g in np.flatnonzero(terms):
                records.append(
                    dict(
                        cell=adata.obs_names[row],
                        label=labels[row],
                        kind="gene",
                        feature=str(names[g]),
                        contribution=float(terms[g]),
                        score=float(final[row, k]),
                        distance=np.nan,
                        **{"class": record.classes[k]},
                    )
                )
    return records


# --- kNN -----------------------------------------------------------------------------------


def _knn_votes(
    adata: AnnData, key: str, record: AnnotationRecord, rows: np.ndarray, reference: AnnData | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], pd.Index, np.ndarray]:
    """The votes of the selected cells recomputed, and the names of the reference rows."""
    from scelmo._neighbors import cross_validated_votes, knn_votes

    params = record.params
    use_rep, label_key = params["use_rep"], params["label_key"]
    options = {
        name: params[name]
        for name in ("k", "weights", "metric", "M", "ef_construction", "ef")
        if name in params
    }
    options["k"] = int(params.get("k_used", options.get("k", 10)))
    query = _representation(adata, use_rep, "adata")
    if params.get("mode") == "cross_validated":
        if reference is not None:
            raise ValueError(f"uns[{key!r}] was cross-validated on adata itself: pass reference=None.")
        labels = adata.obs[label_key].astype(str).to_numpy()
        votes, _ = cross_validated_votes(
            query, labels, folds=int(params["folds"]), random_state=int(params["random_state"]), **options
        )
        return (
            votes.probs[rows],
            votes.neighbors[rows],
            votes.distances[rows],
            votes.classes,
            adata.obs_names,
            labels,
        )
    if reference is None:
        raise ValueError(
            f"uns[{key!r}] transferred labels from a reference: pass the same reference= AnnData."
        )
    reference_rep = params.get("reference_rep", use_rep)
    vectors = _representation(reference, reference_rep, "reference")
    keep = ~reference.obs[label_key].isna().to_numpy() if label_key in reference.obs else None
    if keep is None or int(keep.sum()) != int(params.get("n_reference", -1)):
        raise ValueError(
            f"This reference has {0 if keep is None else int(keep.sum())} cells labelled in obs[{label_key!r}]; "
            f"uns[{key!r}] was computed with {params.get('n_reference')}: pass the reference given to knn_annotate."
        )
    recorded = record.provenance.get("gene_table_hash")
    theirs = ((reference.uns.get(reference_rep) or {}).get("gene_table") or {}).get("content_hash")
    if recorded and theirs != recorded:
        raise ValueError(
            f"reference.obsm[{reference_rep!r}] was embedded with another gene table than the one recorded in "
            f"uns[{key!r}]['provenance']: pass the reference given to knn_annotate."
        )
    labels = reference.obs[label_key][keep].astype(str).to_numpy()
    votes = knn_votes(
        vectors[keep],
        labels,
        query[rows],
        classes=record.classes,
        random_state=int(params.get("random_state", 0)),
        **options,
    )
    return votes.probs, votes.neighbors, votes.distances, votes.classes, reference.obs_names[keep], labels


def _representation(adata: AnnData, use_rep: str, what: str) -> np.ndarray:
    if use_rep == "X":
        matrix = adata.X
        return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float32)
    if use_rep not in adata.obsm:
        raise KeyError(f"{what}.obsm[{use_rep!r}] not found: it is the embedding the annotation compared.")
    return np.asarray(adata.obsm[use_rep], dtype=np.float32)


def _explain_knn(
    adata: AnnData,
    key: str,
    record: AnnotationRecord,
    rows: np.ndarray,
    targets: list[np.ndarray],
    reference: AnnData | None,
) -> list[dict[str, Any]]:
    probs, neighbors, distances, classes, names, ref_labels = _knn_votes(adata, key, record, rows, reference)
    if list(classes) != record.classes:
        raise ValueError(
            f"The reference's classes {list(classes)} are not those of uns[{key!r}]: {record.classes}."
        )
    try:
        _check_probs(adata, key, rows, probs, "neighbours")
    except ValueError as error:
        # hnswlib is approximate and its graph may depend on the threads that built it
        warnings.warn(f"{error} (hnswlib's search is approximate.)", UserWarning, stacklevel=4)
    weighting = record.params.get("weights", "uniform")
    labels = adata.obs[key].astype(str).to_numpy()
    records = []
    for i, (row, wanted) in enumerate(zip(rows, targets, strict=True)):
        found = neighbors[i] >= 0
        if not found.any():
            continue
        share = _shares(distances[i][found], weighting)
        for j, d, s in zip(neighbors[i][found], distances[i][found], share, strict=True):
            k = record.classes.index(ref_labels[j])
            if k in wanted:
                records.append(
                    dict(
                        cell=adata.obs_names[row],
                        label=labels[row],
                        kind="reference_cell",
                        feature=str(names[j]),
                        contribution=float(s),
                        score=float(probs[i, k]),
                        distance=float(d),
                        **{"class": record.classes[k]},
                    )
                )
    return records


def _shares(distances: np.ndarray, weighting: str) -> np.ndarray:
    """Each neighbour's share of the vote (as :func:`scelmo._neighbors.knn_votes` weighs them)."""
    if weighting == "distance":
        with np.errstate(divide="ignore"):
            w = 1.0 / distances
        if np.isinf(w).any():
            w = np.isinf(w).astype(np.float64)
    else:
        w = np.ones_like(distances)
    return w / w.sum()


# --- LangCell ------------------------------------------------------------------------------


def _token_names(adata: AnnData, tokens_key: str, dictionaries: Any) -> dict[int, str]:
    """Token id -> the ``var_names`` of the columns :func:`scelmo.pp.tokenize` made it from (``{}`` if unknown)."""
    from scelmo._anndata import expression_matrix
    from scelmo._records import TokensRecord
    from scelmo.cell_tokens import match_genes

    try:
        params = TokensRecord.read(adata, tokens_key).params
    except KeyError:
        return {}  # tokens stored without pp.tokenize's record: they keep their ids
    if params.get("dictionaries") == "custom" and dictionaries is None:
        return {}  # the dictionaries tokenize was given are needed to name the tokens
    expression = expression_matrix(adata, layer=params.get("layer"), use_raw=bool(params.get("use_raw")))
    match = match_genes(
        expression.gene_names(params.get("gene_id_key")),
        dictionaries,
        hgnc_fallback=bool(params.get("hgnc_fallback", True)),
    )
    names: dict[int, list[str]] = {}
    for column, token in zip(match.columns, match.token_of_column, strict=True):
        names.setdefault(int(token), []).append(str(expression.var_names[column]))
    return {token: "/".join(found) for token, found in names.items()}


def _explain_langcell(
    adata: AnnData,
    key: str,
    record: AnnotationRecord,
    rows: np.ndarray,
    targets: list[np.ndarray],
    model: LangCell | str,
    dictionaries: Any,
) -> list[dict[str, Any]]:
    from scelmo.cell_tokens import CellTokens
    from scelmo.models.langcell import LangCell
    from scelmo.models.langcell._explain import token_attributions

    params = record.params
    if params.get("ctm_top_k") is not None:
        raise ValueError(
            f"uns[{key!r}] used ctm_top_k: its CTM probabilities cannot be differentiated; annotate without it."
        )
    if not isinstance(model, LangCell):
        model = LangCell.from_pretrained(str(model))
    if record.checkpoint_hash and model.checkpoint_hash != record.checkpoint_hash:
        raise ValueError(
            f"uns[{key!r}] was computed with the LangCell checkpoint {record.checkpoint_hash[:12]}..., not this "
            f"model ({model.checkpoint_hash[:12]}...): pass the model given to zeroshot_annotate."
        )
    tokens_key = params.get("tokens_key", "langcell_tokens")
    if tokens_key not in adata.obsm:
        raise KeyError(f"adata.obsm[{tokens_key!r}] not found: the tokens the annotation read are needed.")
    tokens = CellTokens.from_sparse(adata.obsm[tokens_key]).subset(rows)
    texts = [record.texts[c][0] for c in record.classes]
    found = token_attributions(
        model,
        tokens,
        texts,
        targets,
        alpha=float(params.get("alpha", 0.1)),
        use_ctm=bool(params.get("use_ctm", True)),
        temperature=params.get("temperature"),
    )
    # scored in bf16/fp16 (autocast), the probabilities recomputed in float32 differ by more
    atol = _ATOL if params.get("dtype", "float32") == "float32" else _ATOL_HALF
    probs = np.stack([f.probs for f in found]) if found else np.zeros((0, len(texts)))
    _check_probs(adata, key, rows, probs, "LangCell scores", atol=atol)
    names = _token_names(adata, tokens_key, dictionaries)
    labels = adata.obs[key].astype(str).to_numpy()
    records = []
    for row, attribution in zip(rows, found, strict=True):
        for k, values in zip(attribution.classes, attribution.contributions, strict=True):
            for token, value in zip(attribution.tokens, values, strict=True):
                records.append(
                    dict(
                        cell=adata.obs_names[row],
                        label=labels[row],
                        kind="gene",
                        feature=names.get(int(token), f"token {int(token)}"),
                        contribution=float(value),
                        score=float(attribution.probs[k]),
                        distance=np.nan,
                        **{"class": record.classes[int(k)]},
                    )
                )
    return records


def explain(
    adata: AnnData,
    key: str,
    *,
    cells: Any = None,
    classes: Any = None,
    n_top: int | None = 10,
    gene_embeddings: GeneEmbeddings | None = None,
    encoder: TextEncoder | str | None = None,
    reference: AnnData | None = None,
    model: LangCell | str | None = None,
    dictionaries: Any = None,
) -> pd.DataFrame:
    """The tidy explanation frame of :func:`scelmo.tl.explain_annotation` (see the module description).

    Examples
    --------
    >>> from scelmo.annotation._explain import explain
    >>> frame = explain(adata, "zeroshot", cells=["AAAGCCTGGCTAAC-1"], gene_embeddings=table)  # doctest: +SKIP
    """
    record = AnnotationRecord.read(adata, key)
    if f"{key}_probs" not in adata.obsm or key not in adata.obs:
        raise KeyError(f"adata.obs[{key!r}] or adata.obsm[{key + '_probs'!r}] is missing: annotate again.")
    if n_top is not None and n_top < 1:
        raise ValueError(f"`n_top` must be a positive integer or None, got {n_top}.")
    rows = select_cells(adata, cells)
    targets = _targets(adata, key, record, rows, classes)
    if record.method == "elmo":
        records = _explain_elmo(adata, key, record, rows, targets, gene_embeddings, encoder)
    elif record.method == "knn":
        records = _explain_knn(adata, key, record, rows, targets, reference)
    elif record.method == "langcell":
        if model is None:
            raise ValueError(
                f"Explaining uns[{key!r}] (langcell) needs model=: the LangCell given to zeroshot_annotate."
            )
        records = _explain_langcell(adata, key, record, rows, targets, model, dictionaries)
    else:
        raise ValueError(
            f"uns[{key!r}] was made by method {record.method!r}; explanations cover elmo, langcell and knn."
        )
    return _frame(records, n_top)
