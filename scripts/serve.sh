#!/usr/bin/env bash
# Set up (first run only) and start the server with the shipped models on port 8000.
# Settings come from the environment, e.g. PORT=9000 WORKERS=2 MODELS_DIR=models_store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# Several workers write their metrics to one folder, which /metrics adds up (prometheus-client's
# multiprocess mode); it must be empty when they start.
if [ "${WORKERS:-1}" -gt 1 ] && [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  PROMETHEUS_MULTIPROC_DIR="$(mktemp -d -t classifier-metrics.XXXXXX)"
  export PROMETHEUS_MULTIPROC_DIR
fi
# app/serve.py: uvicorn with a listening socket per worker (SO_REUSEPORT), so connections
# opened together spread over the workers; connections past LIMIT_CONCURRENCY (1024) get 503
# from uvicorn itself; idle keep-alive connections close after 5 s; on SIGTERM the app drains
# (DRAIN_SECONDS, 20) and uvicorn then gives what is left 30 s. LOG_FORMAT=json: the server's
# own start-up lines are JSON too.
exec .venv/bin/python -m app.serve "$@"
