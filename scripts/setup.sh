#!/usr/bin/env bash
# Create .venv with Python 3.11+ and install scelmo (editable) with the extras given as $1.
# The CPU build of torch is installed first: with no torch present, pip would resolve the
# project's torch requirement to a CUDA build and several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-offline}"
python="${PYTHON:-python3}"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"

"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"scelmo needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}. Set PYTHON=python3.11.")
PY
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet "$torch_spec"
.venv/bin/python -m pip install --quiet -e ".[$extras]"
# Gene Ontology terms for the offline gene text, where this machine can get them (optional).
bash scripts/fetch_go_sqlite.sh || echo "GO annotations not installed; the offline gene text uses HGNC names only."
