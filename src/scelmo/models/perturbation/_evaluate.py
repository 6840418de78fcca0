"""Held-out evaluation of perturbation predictions against the mean-shift and linear baselines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from scelmo.gene_embeddings import GeneEmbeddings

from ._data import pearson_top_de, perturbation_shifts, split_perturbations

#: Ridge penalties tried (by efficient leave-one-out) for the linear baseline.
RIDGE_ALPHAS = tuple(10.0 ** np.arange(-3, 5))


def evaluate_perturbation_prediction(
    adata: AnnData,
    gene_embeddings: GeneEmbeddings,
    perturbation_key: str,
    control: str,
    *,
    test_perturbations: Sequence[str] | None = None,
    test_size: float = 0.25,
    n_top_de: int = 20,
    layer: str | None = None,
    seed: int = 0,
    model_kwargs: Mapping[str, Any] | None = None,
    train_kwargs: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Train :class:`~scelmo.models.ElmoPerturbation` on some perturbations, score it on the others.

    For every held-out perturbation, the Pearson correlation between predicted and observed
    change from control on its ``n_top_de`` most changed genes is computed for

    - ``model``: :class:`~scelmo.models.ElmoPerturbation` trained on the other perturbations;
    - ``mean_baseline``: the mean change of the training perturbations, the same for all;
    - ``linear_baseline``: ridge regression from the perturbed gene's embedding to the change
      (penalty chosen by leave-one-out over :data:`RIDGE_ALPHAS`).

    Parameters
    ----------
    adata
        Cells x genes (log-normalised) with perturbation labels.
    gene_embeddings
        The gene table for the perturbed genes.
    perturbation_key, control
        Column of perturbation labels and the control category.
    test_perturbations
        Held-out perturbations (default: a random ``test_size`` fraction of those with an
        embedding).
    test_size
        Fraction held out when ``test_perturbations`` is not given.
    n_top_de
        Genes scored per perturbation.
    layer
        Expression layer (default ``adata.X``).
    seed
        Seed of the split and the model.
    model_kwargs, train_kwargs
        Options for :class:`~scelmo.models.ElmoPerturbation` and its ``train``.

    Returns
    -------
    One row per held-out perturbation with the three Pearson correlations and ``n_cells``;
    ``.attrs["summary"]`` holds their means and the train/test sizes.

    Examples
    --------
    >>> from scelmo.models.perturbation import evaluate_perturbation_prediction
    >>> scores = evaluate_perturbation_prediction(adata, table, "gene", "control")  # doctest: +SKIP
    >>> scores.attrs["summary"]  # doctest: +SKIP
    """
    from sklearn.linear_model import RidgeCV

    from ._model import ElmoPerturbation

    shifts = perturbation_shifts(adata, perturbation_key, control, layer=layer)
    try:
        aligned = gene_embeddings.align(shifts.perturbations, min_coverage=0.0)
    except ValueError as err:
        raise ValueError(f"No perturbed gene of obs[{perturbation_key!r}] is in the gene table.") from err
    train_names, test_names = _train_test(
        shifts.perturbations[aligned.matched], test_perturbations, test_size, seed
    )
    position = pd.Index(shifts.perturbations)
    train_rows, test_rows = position.get_indexer(train_names), position.get_indexer(test_names)
    embeddings = aligned.matrix.astype(np.float64)

    labels = adata.obs[perturbation_key].astype(str)
    train_cells = labels.isin([*train_names, str(control)]).to_numpy()
    train_adata = adata[train_cells].copy()
    ElmoPerturbation.setup_anndata(
        train_adata, perturbation_key=perturbation_key, control=control, layer=layer
    )
    model = ElmoPerturbation(
        train_adata, gene_embeddings=gene_embeddings, seed=seed, **dict(model_kwargs or {})
    )
    model.train(seed=seed, **dict(train_kwargs or {}))
    predicted = model.predict(list(test_names), gene_embeddings=gene_embeddings).to_numpy()

    mean_shift = shifts.shifts[train_rows].mean(axis=0)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(embeddings[train_rows], shifts.shifts[train_rows])
    linear = ridge.predict(embeddings[test_rows])

    rows = []
    for i, row in enumerate(test_rows):
        observed = shifts.shifts[row]
        rows.append(
            {
                "model": pearson_top_de(predicted[i], observed, n_top_de),
                "mean_baseline": pearson_top_de(mean_shift, observed, n_top_de),
                "linear_baseline": pearson_top_de(linear[i], observed, n_top_de),
                "n_cells": int(shifts.n_cells[row]),
            }
        )
    result = pd.DataFrame(rows, index=pd.Index(test_names, name="perturbation"))
    result.attrs["summary"] = {
        **{
            f"{column}_mean_pearson": float(result[column].mean())
            for column in ("model", "mean_baseline", "linear_baseline")
        },
        "n_train": len(train_names),
        "n_test": len(test_names),
        "n_top_de": n_top_de,
        "ridge_alpha": float(ridge.alpha_),
    }
    return result


def _train_test(
    usable: pd.Index, test_perturbations: Sequence[str] | None, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out perturbations among the ``usable`` ones (with cells and an embedding)."""
    if test_perturbations is None:
        return split_perturbations(usable, test_size, seed)
    test_names = np.asarray([str(p) for p in test_perturbations], dtype=object)
    unknown = set(test_names) - set(usable)
    if unknown:
        raise ValueError(f"Test perturbations without cells or embedding: {sorted(unknown)[:5]}.")
    return np.asarray([p for p in usable if p not in set(test_names)], dtype=object), test_names
