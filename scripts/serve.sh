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
# Connections past --limit-concurrency get 503 from uvicorn itself; idle keep-alive
# connections close after 5 s; on SIGTERM the app drains (DRAIN_SECONDS, 20) and uvicorn
# then gives what is left --timeout-graceful-shutdown seconds.
# LOG_FORMAT=json: the server's own start-up lines are JSON too.
if [ "${LOG_FORMAT:-text}" = "json" ]; then
  set -- --log-config app/log_config.json "$@"
fi
exec .venv/bin/uvicorn app.main:app --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" --workers "${WORKERS:-1}" \
  --limit-concurrency "${LIMIT_CONCURRENCY:-1024}" --timeout-keep-alive 5 --timeout-graceful-shutdown 30 --no-access-log "$@"
