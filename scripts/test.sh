#!/usr/bin/env bash
# README command 2: create .venv if absent, install ivgf-hf with its [dev] extra, run the test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/test_conversion.py -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
# A second environment with transformers 4.57 (reusing .venv's torch) for the remote-code compatibility tests.
COMPAT_PYTHON="$(bash scripts/setup_compat_venv.sh | tail -n 1)"
export IVGF_COMPAT_PYTHON="$COMPAT_PYTHON"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
# Lint and format check first (configuration in pyproject.toml): a clean tree is part of passing.
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
exec .venv/bin/python -m pytest "$@"
