"""Perturbation prediction from gene embeddings, its evaluation, and CINEMA-OT on scELMo embeddings.

- :class:`ElmoPerturbation`: predicts the expression change of an unseen single-gene
  perturbation from the perturbed gene's text embedding (needs torch and scvi-tools).
- :func:`evaluate_perturbation_prediction`: held-out perturbations scored against the mean-shift
  and a linear baseline (Pearson correlation on the top changed genes).
- :func:`cinemaot`: pertpy's CINEMA-OT with a scELMo embedding in place of PCA (needs pertpy).

The torch-free helpers (:func:`perturbation_shifts`, :func:`pearson_top_de`) import nothing
heavy; the model is imported on first access.
"""

from __future__ import annotations

from scelmo.models._lazy import scvi_lazy_package

from ._cinemaot import cinemaot
from ._data import PerturbationShifts, pearson_top_de, perturbation_shifts
from ._evaluate import RIDGE_ALPHAS, evaluate_perturbation_prediction

__all__ = [
    "RIDGE_ALPHAS",
    "ElmoPerturbation",
    "PerturbationShifts",
    "cinemaot",
    "evaluate_perturbation_prediction",
    "pearson_top_de",
    "perturbation_shifts",
]

_LAZY = {
    "ElmoPerturbation": "._model",
    "PerturbationModule": "._module",
    "fit_perturbation_module": "._module",
}


__getattr__, __dir__ = scvi_lazy_package(__name__, _LAZY, purpose="ElmoPerturbation")
