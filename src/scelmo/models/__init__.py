"""Trainable and pretrained models in the scvi-tools style.

Models that need heavy optional dependencies (torch) are imported on first access, so that
``import scelmo`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> submodule that defines it (imported on first access).
_LAZY = {
    "ElmoAdapter": ".elmo_adapter",
    "ElmoPerturbation": ".perturbation",
    "LangCell": ".langcell",
    "LangCellCE": ".langcell",
    "UntrustedModelError": "._scvi_persistence",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
