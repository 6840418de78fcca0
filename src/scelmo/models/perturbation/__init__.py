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

from typing import Any

from .._lazy import scvi_attribute
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


def __getattr__(name: str) -> Any:
    return scvi_attribute(__name__, _LAZY, name, purpose="ElmoPerturbation")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
