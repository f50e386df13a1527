#!/usr/bin/env bash
# Validate deploy/kserve/*.yaml against the models of KServe's Python SDK (tools/validate_kserve.py).
# The SDK needs protobuf < 7, which TensorFlow's locked environment cannot take, so it gets a
# virtual environment of its own under build/ (made on the first run, ~450 MB, from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KSERVE_VENV:-build/kserve-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import kserve" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "kserve==0.21.0" "kubernetes==37.0.1" "pyyaml>=6"
fi
exec "$VENV/bin/python" tools/validate_kserve.py deploy/kserve/*.yaml
