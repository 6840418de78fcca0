"""scELMo's fine-tuning adapter as an scvi-tools model.

Needs torch, scvi-tools and lightning; they are imported on first access of a name here, so
that the torch-free helpers in ``_data`` can be used without them.
"""

from __future__ import annotations

from scelmo.models._lazy import scvi_lazy_package

__all__ = [
    "ElmoAdapter",
    "ElmoAdapterModule",
    "ElmoAdapterTrainingPlan",
    "knn_accuracy",
    "triplet_margin_all",
]

_LAZY = {
    "ElmoAdapter": "._model",
    "ElmoAdapterModule": "._module",
    "triplet_margin_all": "._module",
    "ElmoAdapterTrainingPlan": "._training_plan",
    "knn_accuracy": "._training_plan",
}


__getattr__, __dir__ = scvi_lazy_package(__name__, _LAZY, purpose="ElmoAdapter")
