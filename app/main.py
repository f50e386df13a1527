"""The FastAPI application: lifespan, middleware, error handlers and routers.

Run it with `uvicorn app.main:app`. Importing this module is cheap: TensorFlow and the
models are loaded in the lifespan, when the server starts.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from fastapi import FastAPI

from app import errors, middleware
from app.config import Settings, get_settings
from app.routers import health, models, predict, tf_serving

logger = logging.getLogger("app")

DESCRIPTION = """
Image classifiers trained on MNIST, Fashion-MNIST and CIFAR-10, served over HTTP.

Try it: `curl -F image=@tests/data/7.png 'http://127.0.0.1:8000/predict?model=custom2'`.
Errors are JSON: `{"error": {"code": ..., "message": ..., "request_id": ...}}`.
"""


def settings_of(app: FastAPI) -> Settings:
    """The app's settings, honouring a test's `app.dependency_overrides[get_settings]`."""
    return app.dependency_overrides.get(get_settings, get_settings)()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """Configure TensorFlow, load and warm up every model in the store, start the batchers."""
    settings = settings_of(app)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(settings.log_level)
    started = time.perf_counter()
    from app.registry import ModelRegistry, configure_tensorflow

    configure_tensorflow(intra_op_threads=settings.intra_op_threads, inter_op_threads=settings.inter_op_threads)
    registry = await anyio.to_thread.run_sync(
        partial(
            ModelRegistry.load,
            settings.models_dir,
            batching=settings.model_batching,
            default_batching=settings.batching,
            warm_up=settings.warmup,
        )
    )
    await registry.start()
    # The loaded graphs are about half a million Python objects that live as long as the
    # process; a full collection walks them all (0.36 s with 28 models on the build
    # machine), a stall that showed as the p99 of the benchmark. Frozen, they are skipped
    # by every collection.
    gc.collect()
    gc.freeze()
    logger.info(
        "ready: %d model versions from %s in %.1f s", len(registry), settings.models_dir, time.perf_counter() - started
    )
    try:
        yield {"registry": registry, "settings": settings}
    finally:
        gc.unfreeze()
        await registry.stop()


def create_app() -> FastAPI:
    """Assemble the application (no model is loaded until the lifespan runs)."""
    app = FastAPI(
        title="Image classifier service",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install_error_handlers(app)
    app.add_middleware(middleware.BodySizeLimitMiddleware, max_bytes=lambda: settings_of(app).max_upload_bytes)
    app.add_middleware(middleware.RequestIdMiddleware)
    app.include_router(predict.router)
    app.include_router(models.router)
    app.include_router(tf_serving.router)
    app.include_router(health.router)
    return app


app = create_app()
