"""Pseudo-bulk expression changes of single-gene perturbations, and the scores used to evaluate them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from scelmo.models._scvi_inputs import check_obs_key, model_expression


@dataclass(frozen=True)
class PerturbationShifts:
    """Mean expression change of each perturbation against the controls.

    ``shifts`` is ``(n_perturbations, n_genes)``: ``mean(x | perturbation) - mean(x | control)``.
    """

    perturbations: pd.Index
    genes: pd.Index
    shifts: np.ndarray
    control_mean: np.ndarray
    n_cells: np.ndarray

    def to_dataframe(self) -> pd.DataFrame:
        """The shifts as a DataFrame (perturbations x genes)."""
        return pd.DataFrame(self.shifts, index=self.perturbations, columns=self.genes)


def perturbation_shifts(
    adata: AnnData, perturbation_key: str, control: str, *, layer: str | None = None, min_cells: int = 1
) -> PerturbationShifts:
    """Pseudo-bulk change of every perturbation's mean expression from the control mean.

    Parameters
    ----------
    adata
        Cells x genes, log-normalised expression (or counts).
    perturbation_key
        Column of ``adata.obs`` naming the perturbed gene of each cell (one gene per cell).
    control
        The category of control cells.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    min_cells
        Perturbations with fewer cells are left out.

    Returns
    -------
    A :class:`PerturbationShifts`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from anndata import AnnData
    >>> from scelmo.models.perturbation import perturbation_shifts
    >>> adata = AnnData(np.array([[1.0, 0.0], [3.0, 0.0], [1.0, 2.0]]), obs=pd.DataFrame({"p": ["ctrl", "ctrl", "B"]}))
    >>> perturbation_shifts(adata, "p", "ctrl").shifts.tolist()
    [[-1.0, 2.0]]
    """
    check_obs_key(adata, perturbation_key, "perturbation_key")
    labels = adata.obs[perturbation_key].astype(str).to_numpy()
    if str(control) not in set(labels):
        raise ValueError(
            f"control {control!r} is not a category of obs[{perturbation_key!r}]; "
            f"categories include {sorted(set(labels))[:10]}."
        )
    matrix = model_expression(adata, layer).matrix
    names, codes = np.unique(labels, return_inverse=True)
    counts = np.bincount(codes, minlength=len(names))
    indicator = sp.csr_matrix(
        (np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(names), len(codes))
    )
    sums = np.asarray(indicator @ _as_float64(matrix))
    means = sums / counts[:, None]
    control_position = int(np.flatnonzero(names == str(control))[0])
    control_mean = means[control_position]
    keep = (np.arange(len(names)) != control_position) & (counts >= min_cells)
    return PerturbationShifts(
        perturbations=pd.Index(names[keep], name=perturbation_key),
        genes=pd.Index(adata.var_names.astype(str)),
        shifts=means[keep] - control_mean[None, :],
        control_mean=control_mean,
        n_cells=counts[keep],
    )


def _as_float64(matrix: Any) -> Any:
    if sp.issparse(matrix):
        return sp.csr_matrix(matrix, dtype=np.float64)
    return np.asarray(matrix, dtype=np.float64)


def top_de_genes(observed: np.ndarray, n_top: int) -> np.ndarray:
    """Indices of the ``n_top`` genes with the largest absolute observed change."""
    n_top = min(n_top, observed.shape[-1])
    return np.argsort(-np.abs(observed), kind="stable")[:n_top]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def pearson_top_de(predicted: np.ndarray, observed: np.ndarray, n_top: int = 20) -> float:
    """Pearson correlation of predicted and observed changes on the perturbation's top DE genes.

    The top genes are those with the largest absolute observed change from control (GEARS'
    "Pearson delta on DE genes").

    Examples
    --------
    >>> import numpy as np
    >>> from scelmo.models.perturbation import pearson_top_de
    >>> pearson_top_de(np.array([1.0, 2.0, 0.1]), np.array([2.0, 4.0, 0.0]), n_top=2)
    1.0
    """
    genes = top_de_genes(observed, n_top)
    return pearson(predicted[genes], observed[genes])


def split_perturbations(
    perturbations: Sequence[str], test_size: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test split of perturbation names, reproducible from ``seed``."""
    names = np.asarray(list(perturbations), dtype=object)
    n_test = round(test_size * len(names)) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < len(names):
        raise ValueError(
            f"The test split must leave perturbations on both sides; got {n_test} of {len(names)}."
        )
    order = np.random.default_rng(seed).permutation(len(names))
    return np.sort(names[order[n_test:]]), np.sort(names[order[:n_test]])
