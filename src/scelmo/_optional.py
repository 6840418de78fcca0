"""Lazy imports of optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, extra: str, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise an :class:`ImportError` that says which extra provides it.

    Parameters
    ----------
    module
        Dotted module name, for example ``"openai"``.
    extra
        The ``scelmo`` extra that installs it, for example ``"openai"``.
    purpose
        What needs it, used in the message (defaults to the module name).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        what = purpose or "This feature"
        raise ImportError(
            f"{what} needs the optional dependency {module!r}, which is not installed. "
            f"Install it with: pip install 'scelmo[{extra}]'"
        ) from err
