#!/usr/bin/env bash
# Set up .venv with the test extras and run the whole test suite: unit tests, the packaging
# checks (sdist, wheel, fresh-venv install, conda recipe) and the documentation build with the
# tutorials executed and warnings as errors (tests/test_packaging.py). pytest arguments pass
# through: `bash scripts/test.sh -k elmo`, or `-m "not slow"` to leave out the docs build, the
# fresh-venv install and the other slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest "$@"
