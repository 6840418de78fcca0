"""In-silico knockout screen (scELMo's in-silico treatment) with an expression-matched null.

scELMo's screen: with a gene table ``E`` (usually the adapted table of an adapter trained to
tell disease from control), set a gene's expression to 0 in the disease cells, re-embed them,
and report how the cosine similarity between the disease and control mean embeddings changes
(positive: the disease cells move toward the controls). We add a null distribution: the same
shift for random genes of similar mean expression, giving a p-value per gene.

Re-embedding after a knockout is exact and cheap. With weights ``x / s`` (``s`` the cell's total
over all genes, mode ``"wa"``), removing gene ``g`` from cell ``c`` gives

``z_c(-g) = (s_c z_c - x_cg E_g) / (s_c - x_cg) = z_c + (z_c - E_g) r_cg``,  ``r_cg = x_cg / (s_c - x_cg)``

(and a zero embedding when ``g`` was the cell's only expressed gene). Summed over the disease
cells, the shift of the mean for every gene at once is ``(R^T Z)_g - E_g sum_c r_cg``: one
sparse product with the pattern of ``X``, never a re-embedding of the whole matrix per gene.
In mode ``"aa"`` (``x @ E / n_genes``) the mean simply loses ``mean_c(x_cg) E_g / n_genes``.

The cell embedding is :func:`scelmo.cell_embedding.weighted_gene_average`'s; :func:`embed_cells`
is its float64 reference, which the algebra above needs: a knockout moves a mean by a
small fraction of it, and float32 would round that difference away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .cell_embedding import Mode
from .gene_embeddings import GeneEmbeddings

Alternative = Literal["greater", "less", "two-sided"]


def _cosine(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``vectors`` (or one vector) with ``reference``."""
    vectors = np.atleast_2d(vectors)
    norms = np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference)
    dots = vectors @ reference
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)


def _as_csr64(matrix: Any) -> sp.csr_matrix:
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix, dtype=np.float64)
    return sp.csr_matrix(np.asarray(matrix, dtype=np.float64))


def embed_cells(matrix: Any, table: np.ndarray, mode: Mode = "wa") -> np.ndarray:
    """``(x / x.sum()) @ E`` (``"wa"``) or ``x @ E / n_genes`` (``"aa"``) in float64; empty cells get zeros.

    The float64 reference of :func:`scelmo.cell_embedding.weighted_gene_average` (same
    formula, same zero vector for a cell without expression, no value checks); the knockout
    algebra of this module builds on it. To embed cells, use that function (or
    :func:`scelmo.tl.elmo_embed`).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.knockout import embed_cells
    >>> embed_cells(np.array([[1.0, 3.0]]), np.eye(2)).tolist()
    [[0.25, 0.75]]
    """
    x = _as_csr64(matrix)
    table = np.asarray(table, dtype=np.float64)
    product = np.asarray(x @ table)
    if mode == "aa":
        return product / x.shape[1]
    if mode != "wa":
        raise ValueError(f"`mode` must be 'wa' or 'aa', got {mode!r}.")
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    return product * scale[:, None]


def single_gene_mean_shifts(
    matrix: Any, table: np.ndarray, mode: Mode = "wa"
) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of the cells, and for every gene the mean embedding after knocking it out.

    Parameters
    ----------
    matrix
        Cells x genes (the cells to knock out in), counts or log-expression, dense or sparse.
    table
        Genes x dims, aligned to the columns of ``matrix``.
    mode
        ``"wa"`` or ``"aa"``.

    Returns
    -------
    ``mean`` ``(dims,)`` and ``means_after`` ``(n_genes, dims)``; row ``g`` is the mean embedding
    of the cells with gene ``g`` set to zero in all of them (exact, see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.knockout import single_gene_mean_shifts
    >>> mean, after = single_gene_mean_shifts(np.array([[1.0, 1.0]]), np.eye(2))
    >>> mean.tolist(), after.tolist()
    ([0.5, 0.5], [[0.0, 1.0], [1.0, 0.0]])
    """
    x = _as_csr64(matrix)
    table = np.asarray(table, dtype=np.float64)
    n_cells, n_genes = x.shape
    if table.shape[0] != n_genes:
        raise ValueError(f"The table has {table.shape[0]} rows but the matrix has {n_genes} genes.")
    if n_cells == 0:
        raise ValueError("No cells to knock genes out in.")
    z = embed_cells(x, table, mode)
    mean = z.mean(axis=0)
    if mode == "aa":
        column_means = np.asarray(x.mean(axis=0)).ravel()
        return mean, mean[None, :] - column_means[:, None] * table / n_genes
    totals = np.asarray(x.sum(axis=1)).ravel()
    x.eliminate_zeros()
    rows = np.repeat(np.arange(n_cells), np.diff(x.indptr))
    remaining = totals[rows] - x.data
    # A gene that was the cell's only expression leaves an empty cell (zero embedding).
    empty = remaining <= 1e-12 * np.maximum(totals[rows], 1.0)
    ratio = np.divide(x.data, remaining, out=np.zeros_like(x.data), where=~empty)
    r = sp.csr_matrix((ratio, x.indices, x.indptr), shape=x.shape)
    delta = np.asarray(r.T @ z) - table * np.asarray(r.sum(axis=0)).ravel()[:, None]
    if empty.any():
        e = sp.csr_matrix((empty.astype(np.float64), x.indices, x.indptr), shape=x.shape)
        delta -= np.asarray(e.T @ z)
    return mean, mean[None, :] + delta / n_cells


def gene_set_mean(
    matrix: Any, table: np.ndarray, genes: Sequence[int] | np.ndarray, mode: Mode = "wa"
) -> np.ndarray:
    """Mean embedding of the cells after setting all ``genes`` (column indices) to zero together.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.knockout import gene_set_mean
    >>> gene_set_mean(np.array([[1.0, 1.0, 2.0]]), np.eye(3), [0, 1]).tolist()
    [0.0, 0.0, 1.0]
    """
    x = _as_csr64(matrix)
    table = np.asarray(table, dtype=np.float64)
    genes = np.asarray(genes, dtype=np.int64)
    n_genes = x.shape[1]
    z = embed_cells(x, table, mode)
    part = x[:, genes]
    removed = np.asarray(part @ table[genes])
    if mode == "aa":
        return (z - removed / n_genes).mean(axis=0)
    totals = np.asarray(x.sum(axis=1)).ravel()
    lost = np.asarray(part.sum(axis=1)).ravel()
    remaining = totals - lost
    keep = remaining > 1e-12 * np.maximum(totals, 1.0)
    after = np.zeros_like(z)
    after[keep] = (z[keep] * totals[keep, None] - removed[keep]) / remaining[keep, None]
    return after.mean(axis=0)


def expression_bins(mean_expression: np.ndarray, pool: np.ndarray, n_bins: int) -> np.ndarray:
    """Quantile bin (0..n_bins-1) of every gene's mean expression, cut on the ``pool`` genes.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.knockout import expression_bins
    >>> expression_bins(np.arange(6.0), np.ones(6, bool), 3).tolist()
    [0, 0, 1, 1, 2, 2]
    """
    if n_bins < 1:
        raise ValueError(f"`n_bins` must be positive, got {n_bins}.")
    edges = np.unique(np.quantile(mean_expression[pool], np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.searchsorted(edges, mean_expression, side="right")


def empirical_p_values(observed: np.ndarray, null: list[np.ndarray], alternative: Alternative) -> np.ndarray:
    """``(1 + #null at least as extreme) / (1 + n_null)`` per gene (NaN when its null is empty).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.knockout import empirical_p_values
    >>> empirical_p_values(np.array([3.0]), [np.array([1.0, 2.0, 4.0])], "greater").tolist()
    [0.5]
    """
    out = np.full(len(observed), np.nan)
    for i, (value, draws) in enumerate(zip(observed, null, strict=True)):
        if len(draws) == 0 or not np.isfinite(value):
            continue
        if alternative == "greater":
            extreme = draws >= value
        elif alternative == "less":
            extreme = draws <= value
        elif alternative == "two-sided":
            extreme = np.abs(draws) >= abs(value)
        else:
            raise ValueError(f"`alternative` must be 'greater', 'less' or 'two-sided', got {alternative!r}.")
        out[i] = (1 + int(extreme.sum())) / (1 + len(draws))
    return out


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.knockout import benjamini_hochberg
    >>> benjamini_hochberg(np.array([0.01, 0.04, 0.03])).round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok) == 0:
        return out
    order = ok[np.argsort(p[ok])]
    ranked = p[order] * len(ok) / np.arange(1, len(ok) + 1)
    out[order] = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    return out


def knockout_screen(
    matrix: Any,
    table: np.ndarray | GeneEmbeddings,
    var_names: Sequence[str] | pd.Index,
    disease: np.ndarray,
    control: np.ndarray,
    genes: Sequence[str] | Mapping[str, Sequence[str]],
    *,
    mode: Mode = "wa",
    embedded: np.ndarray | None = None,
    keyed_by_var_names: bool = False,
    n_perm: int = 1000,
    n_bins: int = 20,
    alternative: Alternative = "greater",
    seed: int = 0,
) -> pd.DataFrame:
    """The knockout screen on arrays; :func:`scelmo.tl.in_silico_knockout` is the AnnData front end.

    Parameters
    ----------
    matrix
        Cells x genes expression (all cells).
    table
        The gene table: a :class:`~scelmo.GeneEmbeddings` (text-derived for the zero-shot
        screen, or an adapter's, :meth:`scelmo.models.ElmoAdapter.get_adapted_gene_embeddings`),
        matched to ``var_names`` here; or a genes x dims array aligned to the columns.
    var_names
        Names of the columns.
    disease, control
        Boolean masks of the disease cells (where genes are knocked out) and of the controls.
    genes
        Genes to screen one by one, or a mapping ``name -> genes`` of sets knocked out together.
    mode
        ``"wa"`` or ``"aa"``.
    embedded
        Boolean mask of genes with an embedding (default: the matched genes of a
        :class:`~scelmo.GeneEmbeddings`, the non-zero rows of an array); only these enter the
        null.
    keyed_by_var_names
        The :class:`~scelmo.GeneEmbeddings` is keyed by names of the columns (an adapter's
        table): match them exactly. By default they are matched as
        :meth:`scelmo.GeneEmbeddings.align` does.
    n_perm
        Null genes (or sets) per candidate, drawn without replacement from its expression bin
        (fewer when the bin is smaller; the count is reported as ``n_null``).
    n_bins
        Quantile bins of mean expression in the disease cells.
    alternative
        ``"greater"`` (moves toward control more than chance), ``"less"`` or ``"two-sided"``.
    seed
        Seed of the null draws.

    Returns
    -------
    One row per candidate, sorted by ``shift`` (largest first for ``"greater"``): ``shift``,
    ``cosine_before``, ``cosine_after``, ``p_value``, ``p_adj`` (Benjamini-Hochberg),
    ``null_mean``, ``null_std``, ``n_null``, ``mean_expression`` (disease cells),
    ``expression_bin``, ``n_genes`` and ``rank``.

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.knockout import knockout_screen
    >>> rng = np.random.default_rng(0)
    >>> X = rng.poisson(1.0, (40, 30)).astype(float)
    >>> X[:20, 0] += 10  # gene 0 up in the disease cells
    >>> E = rng.normal(size=(30, 8))
    >>> disease = np.arange(40) < 20
    >>> names = [f"g{i}" for i in range(30)]
    >>> screen = knockout_screen(X, E, names, disease, ~disease, names, n_bins=1)
    >>> screen.index[0]
    'g0'

    With a :class:`~scelmo.GeneEmbeddings` keyed by the same names:

    >>> import scelmo as se
    >>> table = se.GeneEmbeddings(names, E)
    >>> same = knockout_screen(X, table, names, disease, ~disease, names, n_bins=1, keyed_by_var_names=True)
    >>> same.index[0]
    'g0'
    """
    var_index = pd.Index(np.asarray(var_names, dtype=object).astype(str))
    if isinstance(table, GeneEmbeddings):
        table, matched = _aligned(table, var_index, keyed_by_var_names)
        embedded = matched if embedded is None else embedded
    x = _as_csr64(matrix)
    table = np.asarray(table, dtype=np.float64)
    disease, control = _check_screen(x, table, var_index, disease, control, n_perm)
    x_disease = x[np.flatnonzero(disease)]
    control_mean = embed_cells(x[np.flatnonzero(control)], table, mode).mean(axis=0)
    mean_expression = np.asarray(x_disease.mean(axis=0)).ravel()
    if embedded is None:
        embedded = np.abs(table).sum(axis=1) > 0
    pool = np.asarray(embedded, dtype=bool) & (mean_expression > 0)
    if not pool.any():
        raise ValueError("No gene with an embedding is expressed in the disease cells.")
    bins = expression_bins(mean_expression, pool, n_bins)
    rng = np.random.default_rng(seed)

    sets = _candidate_sets(genes, var_index)
    single = all(len(members) == 1 for members in sets.values()) and not isinstance(genes, Mapping)
    disease_mean, means_after = single_gene_mean_shifts(x_disease, table, mode)
    cosine_before = float(_cosine(disease_mean, control_mean)[0])
    all_shifts = _cosine(means_after, control_mean) - cosine_before if single else None

    rows = []
    null_draws = []
    for members in sets.values():
        if all_shifts is not None:  # single genes
            g = members[0]
            observed = float(all_shifts[g])
            candidates = np.flatnonzero(pool & (bins == bins[g]) & (np.arange(len(bins)) != g))
            draws = rng.choice(candidates, size=min(n_perm, len(candidates)), replace=False)
            null = all_shifts[draws]
        else:
            observed = (
                float(_cosine(gene_set_mean(x_disease, table, members, mode), control_mean)[0])
                - cosine_before
            )
            null = _random_set_shifts(
                x_disease, table, members, pool, bins, n_perm, rng, mode, control_mean, cosine_before
            )
        null_draws.append(np.asarray(null, dtype=np.float64))
        rows.append(
            {
                "shift": observed,
                "cosine_before": cosine_before,
                "cosine_after": cosine_before + observed,
                "null_mean": float(np.mean(null)) if len(null) else np.nan,
                "null_std": float(np.std(null)) if len(null) else np.nan,
                "n_null": len(null),
                "mean_expression": float(mean_expression[members].mean()),
                "expression_bin": int(np.round(bins[members].mean())),
                "n_genes": len(members),
                "genes": ",".join(var_index[members]),
            }
        )
    result = pd.DataFrame(rows, index=pd.Index(list(sets), name="gene" if single else "gene_set"))
    return _ranked(result, null_draws, alternative, single)


def _aligned(
    gene_embeddings: GeneEmbeddings, var_index: pd.Index, keyed_by_var_names: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The table's rows aligned to the columns, and the mask of the columns that have one."""
    if keyed_by_var_names:
        aligned = gene_embeddings.align(var_index, match="exact", min_coverage=0.0)
    else:
        aligned = gene_embeddings.align(var_index)
    return aligned.matrix, aligned.matched


def _check_screen(
    x: sp.csr_matrix, table: np.ndarray, var_index: pd.Index, disease: Any, control: Any, n_perm: int
) -> tuple[np.ndarray, np.ndarray]:
    """The disease and control masks as booleans, after refusing inputs the screen cannot use."""
    disease = np.asarray(disease, dtype=bool)
    control = np.asarray(control, dtype=bool)
    if x.shape[1] != len(var_index) or table.shape[0] != len(var_index):
        raise ValueError("`matrix`, `table` and `var_names` must describe the same genes.")
    if not disease.any():
        raise ValueError("No disease cells: the condition has no cell of the disease group.")
    if not control.any():
        raise ValueError("No control cells: the condition has no cell of the control group.")
    if (disease & control).any():
        raise ValueError("A cell cannot be both disease and control.")
    if n_perm < 1:
        raise ValueError(f"`n_perm` must be positive, got {n_perm}.")
    return disease, control


def _ranked(
    result: pd.DataFrame, null_draws: list[np.ndarray], alternative: Alternative, single: bool
) -> pd.DataFrame:
    """The screen with p-values, sorted by ``shift`` in the direction of ``alternative`` and ranked."""
    result["p_value"] = empirical_p_values(result["shift"].to_numpy(), null_draws, alternative)
    result["p_adj"] = benjamini_hochberg(result["p_value"].to_numpy())
    if single:
        result = result.drop(columns=["genes", "n_genes"])
    key = result["shift"].abs() if alternative == "two-sided" else result["shift"]
    ascending = alternative == "less"
    order = np.argsort(key.to_numpy() * (1 if ascending else -1), kind="stable")
    result = result.iloc[order]
    result.insert(0, "rank", np.arange(1, len(result) + 1))
    columns = ["rank", "shift", "p_value", "p_adj", "cosine_before", "cosine_after", "null_mean", "null_std"]
    return result[columns + [c for c in result.columns if c not in columns]]


def _candidate_sets(
    genes: Sequence[str] | Mapping[str, Sequence[str]], var_index: pd.Index
) -> dict[str, np.ndarray]:
    if isinstance(genes, str):
        genes = [genes]
    named = dict(genes) if isinstance(genes, Mapping) else {str(g): [g] for g in genes}
    if not named:
        raise ValueError("No genes to screen.")
    sets = {}
    for name, members in named.items():
        members = [members] if isinstance(members, str) else list(members)
        positions = var_index.get_indexer(pd.Index(members).astype(str))
        if (positions < 0).any():
            missing = [m for m, p in zip(members, positions, strict=True) if p < 0][:5]
            raise KeyError(f"Genes not in the data (var_names): {missing}.")
        if len(positions) == 0:
            raise ValueError(f"Gene set {name!r} is empty.")
        sets[str(name)] = np.unique(positions)
    return sets


def _random_set_shifts(
    x_disease: sp.csr_matrix,
    table: np.ndarray,
    members: np.ndarray,
    pool: np.ndarray,
    bins: np.ndarray,
    n_perm: int,
    rng: np.random.Generator,
    mode: Mode,
    control_mean: np.ndarray,
    cosine_before: float,
) -> np.ndarray:
    """Shifts of random sets whose members match the members' expression bins one to one."""
    choices = []
    for g in members:
        candidates = np.flatnonzero(pool & (bins == bins[g]))
        candidates = np.setdiff1d(candidates, members)
        if len(candidates) == 0:
            return np.zeros(0)
        choices.append(candidates)
    shifts = np.empty(n_perm)
    for i in range(n_perm):
        drawn = np.unique([rng.choice(c) for c in choices])
        shifts[i] = _cosine(gene_set_mean(x_disease, table, drawn, mode), control_mean)[0] - cosine_before
    return shifts
