#!/usr/bin/env bash
# Set up (first run only) and start the server with the shipped models on port 8000.
# Settings come from the environment, e.g. PORT=9000 WORKERS=2 MODELS_DIR=models_store
# (WORKERS defaults to auto: one per usable CPU, as many as half the free memory holds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# app/serve.py: uvicorn with a listening socket per worker (SO_REUSEPORT), so connections
# opened together spread over the workers; connections past LIMIT_CONCURRENCY (1024) get 503
# from uvicorn itself, counted once they have sent a request head, which must arrive within
# HEADER_TIMEOUT_SECONDS (10) and fit in MAX_HEADER_BYTES (64 KiB; app/protocol.py); idle
# keep-alive connections close after 5 s; on SIGTERM the app drains (DRAIN_SECONDS, 20) and
# uvicorn then gives what is left 30 s; several workers add up their metrics in a
# PROMETHEUS_MULTIPROC_DIR it makes. LOG_FORMAT=json: the server's own start-up
# lines are JSON too.
exec .venv/bin/python -m app.serve "$@"
