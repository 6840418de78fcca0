#!/usr/bin/env bash
# Quick start: set up .venv and run the offline scELMo job on PBMC 68k (reduced).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh offline,bench
.venv/bin/python -m scelmo demo "$@"
