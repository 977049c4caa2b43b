#!/usr/bin/env bash
# README command 1: create .venv if absent, install ivgf-hf with its [train] extra, run `ivgf quickstart`.
# Extra arguments go to `ivgf quickstart` (e.g. `bash scripts/quickstart.sh --compare --out /tmp/qs`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[train]"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
exec .venv/bin/ivgf quickstart "$@"
