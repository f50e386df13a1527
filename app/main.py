"""The FastAPI application: lifespan, middleware, error handlers and routers.

Run it with `uvicorn app.main:app`. Importing this module is cheap: TensorFlow and the
models are loaded in the lifespan, when the server starts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app import __version__, errors, fast_path, logs, metrics, middleware
from app.config import Settings, usable_cpus
from app.routers import admin, explain, health, models, operations, page, predict, tf_serving, v2
from app.security import KeyRing

logger = logging.getLogger("app")

DESCRIPTION = """
Image classifiers trained on MNIST, Fashion-MNIST and CIFAR-10, served over HTTP with three
protocols: the native `/predict`, TensorFlow Serving's REST API (`/v1`) and the Open
Inference Protocol of KServe and Triton (`/v2`).

Try it: `curl -F image=@tests/data/7.png 'http://127.0.0.1:8000/predict?model=custom2'`.
Native errors are JSON: `{"error": {"code": ..., "message": ..., "request_id": ...}}`;
the `/v1` and `/v2` protocols answer `{"error": "<message>"}` as their servers do.
"""


def make_lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    """The lifespan of an app with these settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        """Configure TensorFlow, load and warm up every model in the store, start the pipelines."""
        logs.configure_logging(settings.log_level, settings.log_format)
        started = time.perf_counter()
        from app.inference import ModelRegistry
        from app.inference.model import Admission, configure_tensorflow

        with logs.native_stderr_as_logs("tensorflow"):
            configure_tensorflow(
                intra_op_threads=settings.intra_op_threads,
                inter_op_threads=settings.inter_op_threads,
                fpmath_mode=settings.fpmath_mode,
            )
            import tensorflow as tf

        metrics.BUILD_INFO.labels(app.version, tf.__version__).set(1)
        # TensorFlow's counts as it reports them back, so a deployment can check them.
        logger.info(
            "threads: %d usable CPU(s), intra_op_threads=%d inter_op_threads=%d preprocess_threads=%d",
            usable_cpus(),
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
            settings.preprocess_threads,
        )
        registry = ModelRegistry(settings)
        keys = KeyRing(settings.prediction_keys(), settings.admin_api_keys)
        if keys.enabled:
            logger.info("access control on: %d prediction keys", len(settings.prediction_keys()))
        admission = Admission(settings.max_requests_in_flight)
        await registry.start(anyio.CapacityLimiter(settings.preprocess_threads), admission)
        poller = (
            asyncio.create_task(poll_store(registry, settings.model_poll_seconds))
            if settings.model_poll_seconds
            else None
        )
        drain_on_sigterm(admission, settings.drain_seconds)
        # The loaded graphs are about half a million Python objects that live as long as
        # the process; a full collection walks them all, a stall that showed as the p99
        # of the benchmark (docs/performance.md). Frozen, they are skipped by every collection.
        gc.collect()
        gc.freeze()
        logger.info(
            "ready: %d model versions (%d refused) from %s in %.1f s",
            len(registry),
            len(registry.failed),
            settings.models_dir,
            time.perf_counter() - started,
        )
        try:
            yield {"registry": registry, "settings": settings, "keys": keys}
        finally:
            if poller is not None:
                poller.cancel()
            gc.unfreeze()
            await registry.stop(drain_seconds=settings.drain_seconds)

    return lifespan


async def poll_store(registry: Any, seconds: float) -> None:
    """Every `seconds`, bring the loaded versions in step with the store (`ModelRegistry.refresh`)."""
    while True:
        await asyncio.sleep(seconds)
        try:
            report = await registry.refresh()
        except Exception:  # a bad pass must not end the polling
            logger.exception("polling the model store failed")
            continue
        if report.loaded or report.unloaded or report.failed:
            logger.info(
                "store changed: loaded %s, unloaded %s, failed %s", report.loaded, report.unloaded, report.failed
            )


def drain_on_sigterm(admission: Any, drain_seconds: float) -> None:
    """On SIGTERM, fail readiness at once, let the requests in flight finish (at most
    `drain_seconds`), then hand the signal to the server's own handler, which stops it.

    Only where the server runs the app in the main thread (uvicorn, gunicorn workers);
    elsewhere (a test client) signals are not the app's to take.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()

    async def drain(signum: int) -> None:
        deadline = loop.time() + drain_seconds
        while admission.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.05)
        logger.info("drained: %d requests still in flight; stopping", admission.in_flight)
        if callable(previous):
            previous(signum, None)
        else:
            signal.raise_signal(signum)

    def on_sigterm(signum: int, frame: object) -> None:
        if admission.draining:
            return
        admission.draining = True
        logger.info("SIGTERM: not ready any more; draining %d requests in flight", admission.in_flight)
        loop.call_soon_threadsafe(lambda: loop.create_task(drain(signum)))

    signal.signal(signal.SIGTERM, on_sigterm)


def _telemetry(enabled: bool) -> dict[str, bool]:
    """FastAPI's `telemetry` argument: off unless asked for. When off, FastAPI skips the
    look-up of the global OpenTelemetry providers (and its environment reads) it otherwise
    makes on every request."""
    return {"tracing": enabled, "metrics": enabled, "logs": enabled, "operation_spans": enabled}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Assemble the application; no model is loaded until the lifespan runs.

    Args:
        settings: The settings to serve with; None reads them from the environment.
    """
    settings = settings or Settings()
    about: dict[str, Any] = {
        "title": "Image classifier service",
        "version": __version__,
        "description": DESCRIPTION,
        "lifespan": make_lifespan(settings),
        "telemetry": _telemetry(settings.opentelemetry),
    }
    # FastAPI's own /docs and /redoc load their scripts from a public CDN, blank offline;
    # fastapi-offline serves the same Swagger UI and ReDoc from files in its package.
    if settings.docs_enabled:
        app = FastAPIOffline(docs_url="/docs", redoc_url="/redoc", static_url="/docs-assets", **about)
    else:
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **about)
    errors.install_error_handlers(app)
    # Added first, so innermost: admission, metrics and request ids still wrap it. With
    # OpenTelemetry on, /predict stays routed: FastAPI's instrumentation makes its spans.
    if not settings.opentelemetry:
        app.add_middleware(fast_path.PredictFastPath, routes=lambda: app.routes)
    app.add_middleware(middleware.AdmissionMiddleware, routes=lambda: app.routes)
    app.add_middleware(metrics.MetricsMiddleware)
    app.add_middleware(middleware.RequestIdMiddleware)
    # Added last, so outermost: every answer a browser reads cross-origin carries the CORS
    # headers, those of the fast path and of a 503 from admission included.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "X-Request-ID", "X-Request-Timeout", "Content-Type"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.include_router(predict.router)
    app.include_router(explain.router)
    app.include_router(models.router)
    app.include_router(tf_serving.router)
    app.include_router(v2.router)
    app.include_router(health.router)
    app.include_router(operations.router)
    app.include_router(admin.router)
    if settings.page_enabled:
        page.install(app)
    return app


app = create_app()
