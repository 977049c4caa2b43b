#!/usr/bin/env bash
# Create (if absent) .venv-tf457: a second virtual environment with transformers 4.57.x that reuses every package of
# the main .venv (torch, torchvision, timm, numpy, ...) through a .pth file, so exported Hub folders can be loaded
# under both transformers majors without a second torch install. Prints the interpreter's path on its last line:
#   export IVGF_COMPAT_PYTHON="$(bash scripts/setup_compat_venv.sh | tail -n 1)"
# Run from anywhere after the main .venv exists. Overrides: IVGF_MAIN_VENV, IVGF_COMPAT_VENV (paths relative to the
# repository root or absolute), IVGF_COMPAT_TRANSFORMERS (the version to install).
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN_VENV="${IVGF_MAIN_VENV:-.venv}"
COMPAT_VENV="${IVGF_COMPAT_VENV:-.venv-tf457}"
VERSION="${IVGF_COMPAT_TRANSFORMERS:-4.57.6}"

main_python="$MAIN_VENV/bin/python"
if [ ! -x "$main_python" ]; then
  echo "setup_compat_venv.sh: $main_python not found; create the main environment first (bash scripts/test.sh)" >&2
  exit 1
fi
if [ ! -x "$COMPAT_VENV/bin/python" ]; then
  # The main venv's interpreter creates it, so both share one Python version (torch's compiled extensions need that).
  "$main_python" -m venv "$COMPAT_VENV"
fi
compat_python="$(cd "$COMPAT_VENV" && pwd)/bin/python"
site_packages='import sysconfig; print(sysconfig.get_paths()["purelib"])'
main_site="$("$main_python" -c "$site_packages")"
compat_site="$("$compat_python" -c "$site_packages")"

# site.py reads .pth files in name order after putting the venv's own site-packages on sys.path; "zz_" makes this one
# append the main site-packages last, so what is installed here (transformers 4.57, huggingface_hub 0.x, tokenizers)
# shadows the main copies and everything else comes from the main venv. addsitedir also runs the main venv's .pth
# files (the editable ivgf_hf install).
printf 'import site; site.addsitedir(%s)\n' "'$main_site'" > "$compat_site/zz_main_venv.pth"

# pip sees the main venv's packages through the .pth file and installs here only what transformers $VERSION needs in
# other versions; it never uninstalls from the main venv ("outside environment"). Its resolver then lists conflicts
# between the shadowed main copies and their users (e.g. datasets wants huggingface_hub>=1): they do not apply here.
if ! pip_log="$("$compat_python" -m pip install --quiet --disable-pip-version-check "transformers==$VERSION" 2>&1)"; then
  printf '%s\n' "$pip_log" >&2
  exit 1
fi
printf '%s\n' "$pip_log" | grep -v -e "dependency resolver" -e " requires .*, but you have " -e "^$" >&2 || true
"$compat_python" - "$VERSION" <<'PY'
import sys

import torch
import transformers

if transformers.__version__ != sys.argv[1]:
    raise SystemExit(f"setup_compat_venv.sh: expected transformers {sys.argv[1]}, found {transformers.__version__} "
                     f"at {transformers.__file__}")
print(f"transformers {transformers.__version__} with torch {torch.__version__}", file=sys.stderr)
PY
echo "$compat_python"
