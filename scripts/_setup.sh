# Sourced by scripts/quickstart and scripts/test: make .venv and install the package into it.
# Re-running is cheap: an existing .venv is reused and pip skips what is already installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "sam-widgets needs Python >= 3.10; $($PY --version) found. Set PYTHON=/path/to/python3.x" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
export PATH="$PWD/.venv/bin:$PATH"
pip_q() { python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
if ! python -c 'import torch, torchvision' 2>/dev/null; then
  echo "==> installing torch and torchvision (large: a few minutes)"
  pip_q torch torchvision
fi
echo "==> installing sam-widgets ${SAM_WIDGETS_EXTRAS:+[$SAM_WIDGETS_EXTRAS]}"
pip_q -e ".${SAM_WIDGETS_EXTRAS:+[$SAM_WIDGETS_EXTRAS]}"
python -c 'import sam_widgets, segment_anything' || { echo "install failed: see the messages above" >&2; exit 1; }
