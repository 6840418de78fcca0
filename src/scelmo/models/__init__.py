"""Trainable and pretrained models in the scvi-tools style.

Models that need heavy optional dependencies (torch) are imported on first access, so that
``import scelmo`` stays light. :data:`_LAZY` is the one list of the public names: ``__all__``,
attribute access and ``dir()`` all read it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> submodule that defines it (imported on first access).
_LAZY = {
    "ElmoAdapter": ".elmo_adapter",
    "ElmoPerturbation": ".perturbation",
    "LangCell": ".langcell",
    "LangCellCE": ".langcell",
    "UntrustedModelError": "._scvi_persistence",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """Import a model from its submodule on first access (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # the next access does not come back here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the lazy ones not yet imported."""
    return sorted({*globals(), *__all__})
