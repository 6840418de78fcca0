"""Deprecated: the scores of an embedding against known labels moved to :mod:`scelmo.evaluation`.

``from scelmo.metrics import leiden_scores`` keeps working with a :class:`DeprecationWarning`;
import from :mod:`scelmo.evaluation` instead.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

#: Old name -> name in scelmo.evaluation.
_MOVED = {
    name: name
    for name in ("DEFAULT_RESOLUTIONS", "ClusteringScore", "KnnScore", "knn_cross_validated", "leiden_scores")
} | {"_neighbors": "neighbor_graph"}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module 'scelmo.metrics' has no attribute {name!r}")
    # Resolved by name on first use: the old top-level path must not make the core layer depend
    # on evaluation (docs/architecture.md), and it goes away with the deprecation.
    evaluation = importlib.import_module("scelmo.evaluation")
    warnings.warn(
        f"scelmo.metrics.{name} moved to scelmo.evaluation.{_MOVED[name]}; import it from there "
        "(scelmo.metrics will be removed).",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(evaluation, _MOVED[name])


def __dir__() -> list[str]:
    return sorted([*globals(), *_MOVED])
