#!/usr/bin/env bash
# Create .venv (Python 3.11) and install the locked dependencies with the test tools, once;
# then the project itself without dependencies. Re-runs when the lock or pyproject.toml changes.
# The locks are made by pip-tools from pyproject.toml (see docs/operations.md):
#   requirements.lock (the service, also the Docker image), requirements-dev.lock (+ tests, training).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV="${VENV:-.venv}"
stamp="$VENV/.installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt requirements-dev.lock ]; then
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet --require-hashes -r requirements-dev.lock
"$VENV/bin/python" -m pip install --quiet --no-deps -e .
# The browser tests drive Debian's chromium (Playwright's own download needs the internet).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q chromium >/dev/null 2>&1 || echo "chromium not installed: the browser tests will be skipped"
  else
    echo "no chromium: 'sudo apt-get install chromium' to run the browser tests (skipped without it)"
  fi
fi
touch "$stamp"
