"""Fail the build when a public name of scelmo is missing from the API reference.

Every class and function in the ``__all__`` of ``scelmo`` and of its public submodules (those
without a ``_``-prefixed part; for the few listed modules without ``__all__``, every public
class and function defined there) must be documented somewhere in the API pages, under any
of its import paths. A missing one is reported as a warning,
which ``sphinx-build -W`` turns into an error naming the entry to add to ``docs/api.md``.
Constants and submodules are not required.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Modules checked although they have no ``__all__`` (their public classes and functions).
MODULES_WITHOUT_ALL: tuple[str, ...] = ()
#: Modules that are not API: command-line entry points, and deprecated names of moved modules.
NOT_API = ("scelmo.demo", "scelmo.cli", "scelmo.metrics")


def _public_modules() -> list[str]:
    """``scelmo`` and every submodule whose dotted name has no part starting with ``_``."""
    import scelmo

    names = ["scelmo"]
    for info in pkgutil.walk_packages(scelmo.__path__, "scelmo."):
        if not any(part.startswith("_") for part in info.name.split(".")) and info.name not in NOT_API:
            names.append(info.name)
    return names


def _resolve(name: str) -> Any:
    """The object behind a dotted name (module attribute or class member), or None."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _public_names(module: Any) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    ]


def check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn about every public class or function that no API page documents."""
    documented = {id(obj) for name in env.get_domain("py").objects if (obj := _resolve(name)) is not None}
    for module_name in _public_modules():
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            logger.warning("api_coverage: cannot import %s: %s", module_name, err)
            continue
        if not hasattr(module, "__all__") and module_name not in MODULES_WITHOUT_ALL:
            continue
        for name in _public_names(module):
            value = getattr(module, name, None)
            if inspect.ismodule(value) or not (inspect.isclass(value) or callable(value)):
                continue
            if id(value) not in documented:
                logger.warning(
                    "api_coverage: %s.%s is public (in %s) but not in the API reference; "
                    "add it to an autosummary list in docs/api.md",
                    module_name,
                    name,
                    "__all__" if hasattr(module, "__all__") else "the module",
                )


def setup(app: Sphinx) -> dict[str, bool]:
    """Register the check; it runs once all pages have been read."""
    app.connect("env-check-consistency", check_coverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
