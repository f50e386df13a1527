#!/usr/bin/env bash
# Set up (first run only) and run the test suite. Extra arguments go to pytest.
# The suite also needs two programs from Debian: promtool (package prometheus, for the
# monitoring tests) and chromium (the browser tests); they are installed here when missing
# (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing ${missing[*]} (Debian packages the suite needs)"
  $SUDO apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv/bin/python -m pytest "$@"
