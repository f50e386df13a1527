r"""What the layers of the HTTP request path cost: the same pipeline behind fewer of them.

Three ways to serve `POST /predict?model=NAME` (multipart, field `image`), to load with
`benchmarks/cpu_per_request.py` beside the service itself (`app.main:app`):

- `benchmarks.request_layers:without_middleware` (uvicorn): the app's fast path
  (`app/fast_path.py`) called straight from uvicorn, past FastAPI's own layers and the app's
  middlewares: no request id, admission, metrics or access line;
- `benchmarks.request_layers:one_layer` (uvicorn): the same, with what those middlewares do
  (request id, admission count, metrics, access line) done in one layer instead of three;
- `python benchmarks/request_layers.py --port 8103` : the pipeline behind a bare httptools
  protocol on uvloop, no ASGI at all: the body parsed by the app's multipart code, the
  model's `classify`, the answer built as `/predict` builds it, a request id. It answers
  nothing but a well-formed 28x28 multipart upload of one image and does none of the
  above duties: it bounds what any leaner request path in Python could save.

    MODELS_DIR=/tmp/one-model .venv/bin/python -m uvicorn benchmarks.request_layers:one_layer --port 8106
    .venv/bin/python benchmarks/cpu_per_request.py --match "port 8106" \
        --url "http://127.0.0.1:8106/predict?model=mlp" --concurrency 16

None of this is part of the service: it measures it (docs/performance.md, 2026-11-27).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.types import Message, Receive, Scope, Send

from app import logs
from app.fast_path import PredictFastPath
from app.main import app as service
from app.metrics import MetricsMiddleware

_fast_path = PredictFastPath(service, routes=lambda: service.routes)
_metrics = MetricsMiddleware(service)
_ids = itertools.count()
_ID_PREFIX = os.urandom(8).hex()


def _hot(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope["path"] == "/predict"
        and "registry" in (scope.get("state") or {})
    )


async def without_middleware(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /predict` by the fast path alone; everything else (the lifespan too) by the app."""
    if not _hot(scope):
        await service(scope, receive, send)
        return
    scope["request_id"], scope["arrived_at"] = "-", asyncio.get_running_loop().time()
    await _fast_path(scope, receive, send)


async def one_layer(scope: Scope, receive: Receive, send: Send) -> None:
    """`POST /predict` by the fast path inside one layer that does the three middlewares' work."""
    if not _hot(scope):
        await service(scope, receive, send)
        return
    request_id = f"{_ID_PREFIX}{next(_ids):016x}"
    scope["request_id"], scope["arrived_at"] = request_id, asyncio.get_running_loop().time()
    logs.REQUEST.set({"request_id": request_id})
    admission = scope["state"]["registry"].admission
    header = (b"x-request-id", request_id.encode())
    status = 500

    async def send_with_id(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message["headers"] = [*message.get("headers", []), header]
        await send(message)

    started = time.perf_counter()
    admission.in_flight += 1
    try:
        await _fast_path(scope, receive, send_with_id)
    finally:
        admission.in_flight -= 1
        seconds = time.perf_counter() - started
        _metrics._observe(("/predict", "POST", str(status)), seconds)
        logs.access("POST", "/predict", status, seconds)


async def _serve_bare(port: int) -> None:
    """Load the store as the app's lifespan does and answer uploads on a bare protocol."""
    import anyio
    import httptools
    from python_multipart.multipart import MultipartParser

    from app.config import Settings
    from app.inference import EncodedImage, ModelRegistry
    from app.inference.body import _FormCollector
    from app.inference.model import Admission, configure_tensorflow
    from app.routers.predict import make_prediction

    settings = Settings()
    configure_tensorflow(
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        fpmath_mode=settings.fpmath_mode,
    )
    registry = ModelRegistry(settings)
    await registry.start(anyio.CapacityLimiter(settings.preprocess_threads), Admission(settings.max_requests_in_flight))
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nx-request-id: %s\r\n\r\n"

    class Bare(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport, self.parser = transport, httptools.HttpRequestParser(self)
            self.url, self.content_type, self.body = b"", b"", bytearray()

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            if name.lower() == b"content-type":
                self.content_type = value

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            body, self.body = bytes(self.body), bytearray()
            asyncio.get_running_loop().create_task(self.answer(self.url, self.content_type, body))

        async def answer(self, url: bytes, content_type: bytes, body: bytes) -> None:
            model = parse_qs(httptools.parse_url(url).query.decode())["model"][0]
            collector = _FormCollector(settings.body_limits)
            parser = MultipartParser(content_type.split(b"boundary=")[1], collector.callbacks())
            parser.write(body)
            parser.finalize()
            served = registry.get(model)
            images = [EncodedImage(part.data, index) for index, part in enumerate(collector.parts)]
            result = await served.classify(images, preprocessing=None, deadline=None, disconnected=None)
            answer = {"model": served.model_id, **make_prediction(result.probabilities[0], served.class_names, None)}
            data = json.dumps(answer).encode()
            self.transport.write(head % (len(data), f"{_ID_PREFIX}{next(_ids):016x}".encode()) + data)

    server = await asyncio.get_running_loop().create_server(Bare, "127.0.0.1", port)
    print(f"bare protocol on 127.0.0.1:{port}", flush=True)
    await server.serve_forever()


def main() -> None:
    """Serve the bare protocol until interrupted."""
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8103)
    uvloop.run(_serve_bare(parser.parse_args().port))


if __name__ == "__main__":
    main()
