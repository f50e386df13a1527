"""Prometheus metrics of the service, with prometheus-client.

With several worker processes (uvicorn `--workers`, gunicorn), set
`PROMETHEUS_MULTIPROC_DIR` to an empty folder shared by them before they start
(`scripts/serve.sh` does): each process then writes its samples there, and `/metrics`
adds them up across processes (prometheus-client's multiprocess mode). Names and units
follow Prometheus conventions: seconds, `_total` counters, base units.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs

__all__ = [
    "BATCH_SIZE",
    "BUILD_INFO",
    "CONTENT_TYPE_LATEST",
    "EXPLAIN_DURATION",
    "EXPLANATIONS",
    "HEADS_REFUSED",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_DURATION",
    "INFERENCE_DURATION",
    "MODEL_LOADED",
    "MODEL_LOAD_DURATION",
    "QUEUE_DEPTH",
    "QUEUE_WAIT",
    "REJECTED",
    "MetricsMiddleware",
    "scrape",
]

disable_created_metrics()  # `_created` series double the counters and tell a scraper nothing it needs

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: from a 28x28 digit on one core (about a millisecond) to a large photo under load."""

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ["route", "method", "status"])
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
HEADS_REFUSED = Counter(
    "http_request_heads_refused_total",
    "Connections answered and closed for their request head: timeout (408, HEADER_TIMEOUT_SECONDS) "
    "or too_large (431, MAX_HEADER_BYTES).",
    ["reason"],
)
INFERENCE_DURATION = Histogram(
    "inference_duration_seconds",
    "Time of one model call (a padded batch) in the model's thread.",
    ["model", "version"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "inference_batch_size_images",
    "Images per model call, before padding.",
    ["model", "version"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
QUEUE_WAIT = Histogram(
    "inference_queue_wait_seconds",
    "Time an input waited in the batcher's queue before its batch ran.",
    ["model", "version"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "inference_queue_depth_images",
    "Inputs waiting for a model: queued in its batcher or being prepared.",
    ["model", "version"],
    multiprocess_mode="livesum",
)
REJECTED = Counter(
    "inference_requests_rejected_total",
    "Requests for a model refused: overloaded, deadline_exceeded or bad_input.",
    ["model", "reason"],
)
EXPLANATIONS = Counter(
    "explanations_total",
    "Explanations asked for, by outcome: ok, overloaded, deadline_exceeded, bad_input or failed.",
    ["model", "method", "outcome"],
)
EXPLAIN_DURATION = Histogram(
    "explanation_duration_seconds",
    "Time to compute one explanation (the attribution map), seconds.",
    ["model", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
MODEL_LOADED = Gauge(
    "model_loaded",
    "1 for each model version in memory and serving (one that loads on its first request: 0 until then).",
    ["model", "version"],
    multiprocess_mode="livemax",
)
MODEL_LOAD_DURATION = Gauge(
    "model_load_duration_seconds",
    "Time to load and warm up a model version.",
    ["model", "version"],
    multiprocess_mode="livemax",
)
BUILD_INFO = Gauge(
    "build_info",
    "Always 1; the labels give the service's version and its TensorFlow's.",
    ["version", "tensorflow"],
    multiprocess_mode="livemax",
)


def scrape() -> bytes:
    """The current samples in Prometheus' text format, added up over every worker process
    when `PROMETHEUS_MULTIPROC_DIR` is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def mark_process_dead(pid: int) -> None:
    """Drop the live gauges of a worker process that exited (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prometheus_multiprocess.mark_process_dead(pid)


class MetricsMiddleware:
    """Count and time every HTTP request by route template, method and status, and write
    its access line (`app.logs.access`).

    Pure ASGI, so it costs one wrapper per request. The route template comes from the
    router (`/v1/models/{name}:predict`, never the raw path, so label values stay few);
    a path no route matched counts as `unmatched`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # (route, method, status) -> its counter and histogram: `labels()` takes a lock and
        # builds a key on every call; the set of label values is small and fixed.
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def _observe(self, labels: tuple[str, str, str], seconds: float) -> None:
        children = self._children.get(labels)
        if children is None:
            children = (HTTP_REQUESTS.labels(*labels), HTTP_REQUEST_DURATION.labels(*labels))
            self._children[labels] = children
        children[0].inc()
        children[1].observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            seconds = time.perf_counter() - started
            self._observe((template, scope["method"], str(status)), seconds)
            logs.access(scope["method"], template, status, seconds)
