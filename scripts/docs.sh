#!/usr/bin/env bash
# Set up .venv with the doc extras and build the HTML documentation (tutorials executed) with
# warnings as errors. Output: docs/_build/html/index.html. Extra arguments go to sphinx-build.
# The test suite runs the same build (tests/test_packaging.py), so CI fails on any warning.
# Executed tutorials are cached in docs/_build/.jupyter_cache: a rebuild runs only changed ones.
# SCELMO_DOCS_EXECUTE=off skips running them; SCELMO_DOCS_INTERSPHINX=1 links to other
# projects' docs (needs network for their inventories).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh doc
.venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html "$@"
echo "Documentation built: docs/_build/html/index.html"
