"""scELMo's fine-tuning adapter as an scvi-tools model.

Needs torch, scvi-tools and lightning; they are imported on first access of a name here, so
that the torch-free helpers in ``_data`` can be used without them.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from ..._optional import import_optional

        import_optional("torch", "adapter", purpose="ElmoAdapter")
        import_optional("scvi", "adapter", purpose="ElmoAdapter")
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
