# syntax=docker/dockerfile:1
# The inference service with the shipped models baked in.
#   docker build -t classifier .                        # CPU
#   docker build --build-arg EXTRAS=gpu -t classifier:gpu .   # TensorFlow with CUDA libraries
#   docker run -p 8000:8000 -e UVICORN_WORKERS=2 classifier
FROM python:3.11-slim

# "gpu" installs tensorflow[and-cuda] (pyproject's optional dependencies); empty for CPU.
ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODELS_DIR=/srv/models_store \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=8000 \
    UVICORN_WORKERS=1 \
    UVICORN_LIMIT_CONCURRENCY=1024 \
    UVICORN_TIMEOUT_KEEP_ALIVE=5 \
    UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=30 \
    UVICORN_ACCESS_LOG=false

WORKDIR /srv

# Exact versions and hashes of every runtime dependency (pip-tools), then the project alone.
COPY requirements.lock pyproject.toml README.md ./
COPY app ./app
COPY modelstore ./modelstore
COPY training ./training
# DL3013: the unpinned installs are this project itself (a local path) and its GPU extra.
# hadolint ignore=DL3013
RUN pip install --require-hashes --requirement requirements.lock \
    && pip install --no-deps . \
    && if [ -n "${EXTRAS}" ]; then pip install ".[${EXTRAS}]"; fi \
    && useradd --create-home --uid 10001 app

COPY models_store ./models_store

USER 10001
EXPOSE 8000

# Readiness on the port the container was given (UVICORN_PORT), not a fixed one.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('UVICORN_PORT', '8000'), timeout=2)"]

CMD ["uvicorn", "app.main:app"]
