"""Trainable and pretrained models in the scvi-tools style.

Models that need heavy optional dependencies (torch) are imported on first access, so that
``import scelmo`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__: list[str] = ["LangCell"]

# Public name -> submodule that defines it (imported on first access).
_LAZY = {"LangCell": ".langcell"}
_LAZY["LangCellCE"] = ".langcell"
__all__ += ["LangCellCE"]
_LAZY["ElmoAdapter"] = ".elmo_adapter"
_LAZY["ElmoPerturbation"] = ".perturbation"
__all__ += ["ElmoAdapter", "ElmoPerturbation"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
