"""The one lazy-import path of the scvi-tools models (``ElmoAdapter``, ``ElmoPerturbation``).

Their packages keep the torch-free helpers importable without torch: the names that need
torch and scvi-tools are imported on first access, and a missing dependency raises an
ImportError naming the extra to install (``pip install 'scelmo[adapter]'``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

from scelmo._optional import import_optional

#: What the scvi-tools models need, in the order they are checked.
SCVI_REQUIREMENTS = ("torch", "scvi")


def scvi_attribute(package: str, lazy: Mapping[str, str], name: str, *, purpose: str) -> Any:
    """``name`` of ``package`` from the submodule ``lazy`` names for it, importing torch and scvi-tools first.

    Parameters
    ----------
    package
        The package asked (its ``__name__``); ``lazy`` holds submodules relative to it.
    lazy
        Public name -> submodule that defines it (``{"ElmoAdapter": "._model"}``).
    name
        The name asked for.
    purpose
        What needs the dependencies, for the ImportError (``"ElmoAdapter"``).

    Returns
    -------
    The attribute.

    Raises
    ------
    AttributeError
        If ``name`` is not in ``lazy`` (Python's own message for a missing attribute).
    ImportError
        If torch or scvi-tools is missing; the message names the ``adapter`` extra.

    Examples
    --------
    >>> from scelmo.models._lazy import scvi_attribute
    >>> scvi_attribute("scelmo.models.elmo_adapter", {}, "nothing", purpose="ElmoAdapter")
    Traceback (most recent call last):
    ...
    AttributeError: module 'scelmo.models.elmo_adapter' has no attribute 'nothing'
    """
    if name not in lazy:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    for module in SCVI_REQUIREMENTS:
        import_optional(module, "adapter", purpose=purpose)
    return getattr(importlib.import_module(lazy[name], package), name)


def scvi_lazy_package(
    package: str, lazy: Mapping[str, str], *, purpose: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` of a package whose ``lazy`` names need torch and scvi-tools.

    Examples
    --------
    In the package's ``__init__.py``:

    >>> __getattr__, __dir__ = scvi_lazy_package(__name__, {"ElmoAdapter": "._model"}, purpose="ElmoAdapter")  # doctest: +SKIP
    """

    def __getattr__(name: str) -> Any:
        return scvi_attribute(package, lazy, name, purpose=purpose)

    def __dir__() -> list[str]:
        return sorted([*vars(sys.modules[package]), *lazy])

    return __getattr__, __dir__
