#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the locked dependencies, then the project itself
# without dependencies; once, and again when the lock or pyproject.toml changes.
#   bash scripts/setup.sh          the service: requirements.lock (what scripts/serve.sh needs)
#   bash scripts/setup.sh dev      + tests, training, benchmarks: requirements-dev.lock
# The locks are made by pip-tools from pyproject.toml (see docs/operations.md); the dev lock
# holds every pin of the runtime lock, so a dev install serves too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-.venv}"
case "${1:-runtime}" in
  runtime) lock=requirements.lock ;;
  dev) lock=requirements-dev.lock ;;
  *) echo "usage: scripts/setup.sh [runtime|dev]" >&2; exit 2 ;;
esac
fresh() { [ -f "$1" ] && [ "$1" -nt pyproject.toml ] && [ "$1" -nt "$2" ]; }
if fresh "$VENV/.installed-dev" requirements-dev.lock; then exit 0; fi
if [ "$lock" = requirements.lock ] && fresh "$VENV/.installed-runtime" requirements.lock; then exit 0; fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --require-hashes -r "$lock"
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
if [ "$lock" = requirements-dev.lock ]; then touch "$VENV/.installed-dev"; fi
touch "$VENV/.installed-runtime"
