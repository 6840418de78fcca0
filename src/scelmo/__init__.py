"""Language-model embeddings for single-cell analysis (scELMo / GenePT and LangCell) on AnnData."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import datasets, models, pl, pp, tl
    from .gene_embeddings import AlignedGeneEmbeddings, GeneEmbeddings

__version__ = "0.1.0"

__all__ = ["AlignedGeneEmbeddings", "GeneEmbeddings", "__version__", "datasets", "models", "pl", "pp", "tl"]

# Subpackages and classes are imported on first use (PEP 562): `import scelmo` and the command
# line start in milliseconds instead of seconds, and the command line can answer Ctrl-C with one
# line while the scientific libraries load.
_SUBPACKAGES = frozenset({"datasets", "models", "pl", "pp", "tl"})
_CLASSES = {"AlignedGeneEmbeddings": "gene_embeddings", "GeneEmbeddings": "gene_embeddings"}


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        value = getattr(importlib.import_module(f"{__name__}.{_CLASSES[name]}"), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES or (
        not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None
    ):
        # Any public submodule (`se.text`, `se.gene_ids`, ...) as if it had been imported here.
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES, *_CLASSES})
