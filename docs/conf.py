"""Sphinx configuration of the scelmo documentation.

Build with ``bash scripts/docs.sh`` (or ``sphinx-build -W --keep-going -b html docs docs/_build/html``).
The tutorials are executed during the build. The test suite runs the same build
(``tests/test_packaging.py::test_docs_build_without_warnings``), so CI fails on any warning.
Links to other projects' documentation (intersphinx) need their inventories from the
internet, so they are opt-in:
``SCELMO_DOCS_INTERSPHINX=1 sphinx-build ...``. ``SCELMO_DOCS_EXECUTE=off`` skips running the
tutorials (quick rebuilds of the API pages); ``force`` re-runs them even when cached.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from importlib.metadata import version as _version
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "extensions"))

# -- Project -----------------------------------------------------------------------------------
project = "scelmo"
author = "scelmo developers"
copyright = f"{date.today():%Y}, {author}"
release = _version("scelmo")
version = release

# -- General -----------------------------------------------------------------------------------
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_autodoc_typehints",
    "sphinx_copybutton",
    "sphinx_design",
    "typed_returns",
    "api_coverage",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
default_role = "literal"
pygments_style = "default"

# -- autodoc / autosummary / napoleon (numpydoc docstrings) ------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "groupwise"
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = True  # "Attributes" sections as fields: the class template documents each attribute
napoleon_custom_sections = [("Params", "Parameters")]
typehints_defaults = "braces"
typehints_document_rtype = True
always_use_bars_union = True

# -- intersphinx: only when asked (it downloads inventories) -----------------------------------
if os.environ.get("SCELMO_DOCS_INTERSPHINX", "0") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "pooch": ("https://www.fatiando.org/pooch/latest/", None),
    }
else:
    intersphinx_mapping = {}
    intersphinx_disabled_reftypes = ["*"]

# -- MyST and executed notebooks ---------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath", "html_admonition"]
myst_heading_anchors = 3
myst_url_schemes = ("http", "https", "mailto")
nb_execution_mode = os.environ.get("SCELMO_DOCS_EXECUTE", "cache")
nb_execution_timeout = 600  # seconds per cell; the first gene table build loads the text model
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_in_temp = True  # files the tutorials write (table.npz, ...) go to a temporary folder
nb_execution_excludepatterns: list[str] = []
nb_merge_streams = True
nb_output_stderr = "show"
# Kernels inherit this: no notice about notebook widgets from tqdm.auto in the executed pages.
os.environ.setdefault("PYTHONWARNINGS", "ignore:IProgress not found")

# -- HTML --------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "scelmo"
html_static_path = ["_static"]
html_css_files = ["css/custom.css"]
html_show_sphinx = False
html_theme_options = {
    "repository_url": "https://github.com/scverse/scelmo",
    "repository_branch": "main",
    "path_to_docs": "docs/",
    "use_repository_button": True,
    "use_issues_button": True,
    "use_edit_page_button": False,
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_context = {"default_mode": "light"}

# -- Warnings ----------------------------------------------------------------------------------
nitpicky = False
suppress_warnings: list[str] = []
