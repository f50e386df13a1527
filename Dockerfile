# syntax=docker/dockerfile:1
# The inference service with the shipped models baked in.
#   docker build -t classifier .                                # CPU
#   docker build --build-arg EXTRAS=gpu -t classifier:gpu .     # TensorFlow with CUDA libraries
#   docker run -p 8000:8000 -e WORKERS=2 classifier       # classifier-serve --help: every option
# (podman: `podman build --format docker ...` keeps the HEALTHCHECK; scripts/container-test.sh)

# Build stage: a virtual environment with the locked dependencies and the project.
FROM python:3.11-slim AS build

# "gpu" installs tensorflow[and-cuda] (pyproject's optional dependencies); empty for CPU.
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY requirements.lock pyproject.toml README.md ./
COPY app ./app
COPY modelstore ./modelstore
COPY training ./training
# Exact versions and hashes of every runtime dependency (pip-tools), then the project alone.
# DL3013: the unpinned install is this project's own GPU extra.
# hadolint ignore=DL3013
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --requirement requirements.lock \
    && /opt/venv/bin/pip install --no-deps . \
    && if [ -n "${EXTRAS}" ]; then /opt/venv/bin/pip install ".[${EXTRAS}]"; fi

# Runtime stage: the environment and the store; no build files, no pip cache.
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MODELS_DIR=/srv/models_store \
    HOST=0.0.0.0 \
    PORT=8000

RUN useradd --create-home --uid 10001 app
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY models_store ./models_store

USER 10001
EXPOSE 8000

# Readiness on the port the container was given (PORT), not a fixed one.
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('PORT', '8000'), timeout=2)"]

# The same program as scripts/serve.sh, with the same settings (HOST, PORT, WORKERS, ...).
CMD ["classifier-serve"]
