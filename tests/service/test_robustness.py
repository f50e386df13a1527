"""Overload, deadlines, disconnects, faults, slow clients, hostile input and draining:
the server keeps serving, answers every request it accepted, and never stalls the others."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
import socket
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.errors import DeadlineExceeded
from app.inference import Tensor
from app.main import create_app
from tests.conftest import DATA, serve, upload
from tests.images import encode, png_declaring

pytestmark = pytest.mark.slow

SEVEN = (DATA / "7.png").read_bytes()
SEVEN_B64 = base64.b64encode(SEVEN).decode()


def _png_text_bomb() -> bytes:
    """A valid 28x28 PNG carrying zTXt chunks that inflate to 64 MB each."""
    png = SEVEN
    chunk_data = b"Comment\x00\x00" + zlib.compress(b"\x00" * (64 << 20), 9)
    chunk = struct.pack(">I", len(chunk_data)) + b"zTXt" + chunk_data
    chunk += struct.pack(">I", zlib.crc32(b"zTXt" + chunk_data))
    return png[:33] + chunk * 4 + png[33:]


def _photo(width: int, height: int) -> bytes:
    """A smooth colour gradient as a JPEG photo, a few hundred KB for millions of pixels."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=-1)
    return encode(Image.fromarray(pixels.astype(np.uint8)), "JPEG", quality=90)


def hostile_requests() -> list[tuple[str, str, dict]]:
    """(name, path, httpx request arguments) of the hostile corpus, every protocol."""
    nested = b"[" * 100_000 + b"]" * 100_000
    many = json.dumps({"instances": [{"b64": "AAAA"}] * 60_000}).encode()
    tensor_depth = json.dumps({"instances": [[[[[[[[[[[[[[[[[[[[0.0]]]]]]]]]]]]]]]]]]]]}).encode()
    bomb = _png_text_bomb()
    pixel_bomb = png_declaring(50_000, 50_000)
    giant16 = encode(Image.new("I;16", (8000, 6000), 40000))
    truncated = _photo(800, 600)[:20_000]
    return [
        (
            "nested json /predict",
            "/predict?model=tiny",
            {"content": nested, "headers": {"content-type": "application/json"}},
        ),
        ("nested json /v1", "/v1/models/mnist-tiny:predict", {"content": nested}),
        ("nested json /v2", "/v2/models/mnist-tiny/infer", {"content": nested}),
        ("huge integer /v1", "/v1/models/mnist-tiny:predict", {"content": b'{"instances": [' + b"9" * 5000 + b"]}"}),
        ("huge integer /v2", "/v2/models/mnist-tiny/infer", {"content": b'{"inputs": [], "id": ' + b"9" * 5000 + b"}"}),
        ("deep tensor /v1", "/v1/models/mnist-tiny:predict", {"content": tensor_depth}),
        ("many instances /v1", "/v1/models/mnist-tiny:predict", {"content": many}),
        (
            "many elements /v2",
            "/v2/models/mnist-tiny/infer",
            {
                "json": {
                    "inputs": [{"name": "images", "shape": [300, 28, 28, 1], "datatype": "FP32", "data": [0] * 235200}]
                }
            },
        ),
        ("chunk bomb /predict", "/predict?model=tiny", {"files": upload(bomb)}),
        (
            "chunk bomb /v1",
            "/v1/models/mnist-tiny:predict",
            {"json": {"instances": [{"b64": base64.b64encode(bomb).decode()}]}},
        ),
        ("pixel bomb /predict", "/predict?model=tiny", {"files": upload(pixel_bomb)}),
        (
            "pixel bomb /v2",
            "/v2/models/mnist-tiny/infer",
            {
                "json": {
                    "inputs": [
                        {
                            "name": "image_bytes",
                            "shape": [1],
                            "datatype": "BYTES",
                            "data": [base64.b64encode(pixel_bomb).decode()],
                        }
                    ]
                }
            },
        ),
        ("16-bit giant /predict", "/predict?model=tiny", {"files": upload(giant16)}),
        ("truncated jpeg /predict", "/predict?model=tiny", {"files": upload(truncated, "t.jpg", "image/jpeg")}),
        (
            "truncated jpeg /v1",
            "/v1/models/mnist-tiny:predict",
            {"json": {"instances": [{"b64": base64.b64encode(truncated).decode()}]}},
        ),
        (
            "binary header lies /v2",
            "/v2/models/mnist-tiny/infer",
            {"content": b"{}", "headers": {"Inference-Header-Content-Length": "999"}},
        ),
    ]


async def _trickle() -> AsyncIterator[bytes]:
    yield b'{"instances": ['
    for _ in range(40):
        await asyncio.sleep(0.1)
        yield b" "


async def _hostile_while_pinging(url: str) -> tuple[list[float], list[tuple[str, int, object]]]:
    pings: list[float] = []
    answers: list[tuple[str, int, object]] = []
    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=f"http://{url}", timeout=60) as client:

        async def ping() -> None:
            while not done.is_set():
                started = time.perf_counter()
                response = await client.get("/healthz")
                pings.append(time.perf_counter() - started)
                assert response.status_code == 200
                await asyncio.sleep(0.02)

        async def send(name: str, path: str, arguments: dict) -> None:
            response = await client.post(path, **arguments)
            answers.append((name, response.status_code, response.json() if response.content else None))

        async def trickle(path: str) -> None:
            response = await client.post(path, content=_trickle())
            answers.append((f"trickle {path}", response.status_code, response.json()))

        pinger = asyncio.create_task(ping())
        await asyncio.sleep(0.2)
        await asyncio.gather(
            *(send(*request) for request in hostile_requests()),
            trickle("/v1/models/mnist-tiny:predict"),
            trickle("/v2/models/mnist-tiny/infer"),
        )
        done.set()
        await pinger
    return pings, answers


def test_hostile_corpus_gets_4xx_and_never_stalls_the_loop(tiny_store: Path) -> None:
    with serve(tiny_store, BODY_READ_TIMEOUT_SECONDS="1") as (url, _):
        pings, answers = asyncio.run(_hostile_while_pinging(url))
        for name, status, body in answers:
            assert 400 <= status < 500, (name, status, body)
            assert isinstance(body, dict) and "error" in body, (name, body)
        statuses = {name: status for name, status, _ in answers}
        assert statuses["trickle /v1/models/mnist-tiny:predict"] == 408
        assert statuses["nested json /v2"] == 400 and statuses["huge integer /v1"] == 400
        assert statuses["pixel bomb /predict"] == 413 and statuses["many instances /v1"] == 413
        # The stalls this guards against held the loop for 4-7 s (a 60,000-instance body, a
        # PNG of inflating chunks); 2 s leaves room for a busy shared machine.
        worst = max(pings)
        assert worst < 2.0, f"/healthz waited {worst * 1000:.0f} ms (p99 {np.percentile(pings, 99) * 1000:.0f} ms)"
        assert httpx.post(f"http://{url}/predict?model=tiny", files=upload(SEVEN)).status_code == 200


async def _burst(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=f"http://{url}", timeout=60, limits=limits) as client:
        body = {"instances": [{"b64": SEVEN_B64}] * 16}
        return await asyncio.gather(*(client.post("/v1/models/mnist-tiny:predict", json=body) for _ in range(count)))


def test_overload_is_shed_at_once_with_retry_after(tiny_store: Path) -> None:
    with serve(tiny_store, MAX_REQUESTS_IN_FLIGHT="2", MAX_QUEUED_INPUTS="32") as (url, _):
        responses = asyncio.run(_burst(url, 48))
        shed = [response for response in responses if response.status_code == 503]
        served = [response for response in responses if response.status_code == 200]
        assert shed and served and len(shed) + len(served) == len(responses)
        assert all(response.headers["retry-after"] == "1" for response in shed)
        assert all("in flight" in r.json()["error"] or "queued" in r.json()["error"] for r in shed)
        assert all(len(response.json()["predictions"]) == 16 for response in served)


def test_uploads_still_arriving_do_not_count_against_the_in_flight_bound(tiny_store: Path) -> None:
    # Five clients send a whole head and part of their upload, then wait: with bodies on
    # their way counted as in flight, two would have every other prediction refused (503).
    head = b"POST /predict?model=tiny HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n"
    head += b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
    with serve(tiny_store, MAX_REQUESTS_IN_FLIGHT="2", BODY_READ_TIMEOUT_SECONDS="20") as (url, _):
        host, port = url.rsplit(":", 1)
        slow = [socket.create_connection((host, int(port))) for _ in range(5)]
        try:
            for connection in slow:
                connection.sendall(head)
            time.sleep(0.5)
            for _ in range(3):
                answer = httpx.post(f"http://{url}/predict?model=tiny", files=upload(SEVEN), timeout=30)
                assert answer.status_code == 200, answer.text
        finally:
            for connection in slow:
                connection.close()


def test_expired_deadlines_answer_504_in_every_protocol(tiny_store: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_store, request_timeout_seconds=1e-6))) as client:
        native = client.post("/predict?model=tiny", files=upload(SEVEN))
        assert native.status_code == 504 and native.json()["error"]["code"] == "deadline_exceeded"
        tf = client.post("/v1/models/mnist-tiny:predict", json={"instances": [{"b64": SEVEN_B64}]})
        assert tf.status_code == 504 and "deadline" in tf.json()["error"]
        body = {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [SEVEN_B64]}]}
        assert client.post("/v2/models/mnist-tiny/infer", json=body).status_code == 504


def test_client_timeouts_shorten_the_deadline(client: TestClient) -> None:
    assert (
        client.post("/predict?model=tiny", files=upload(SEVEN), headers={"X-Request-Timeout": "5"}).status_code == 200
    )
    assert (
        client.post("/predict?model=tiny", files=upload(SEVEN), headers={"X-Request-Timeout": "0"}).status_code == 422
    )
    body = {
        "parameters": {"timeout": 1},
        "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [SEVEN_B64]}],
    }
    assert client.post("/v2/models/mnist-tiny/infer", json=body).status_code == 504  # 1 microsecond
    body["parameters"] = {"timeout": 5_000_000}
    assert client.post("/v2/models/mnist-tiny/infer", json=body).status_code == 200


def test_work_of_a_past_deadline_or_a_gone_client_never_reaches_the_model(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from starlette.requests import ClientDisconnect

    monkeypatch.setattr("app.inference.model.DISCONNECT_CHECK_AFTER", 0.0)  # watch at once
    model = client.app_state["registry"].get("tiny")
    image = np.zeros((28, 28, 1), np.float32)
    # The model is held busy with another request's batch while the client goes away, so
    # its inputs are still queued when that is noticed (a batch already running is not undone).
    entered, release = threading.Event(), threading.Event()
    run_batch = model.batcher.run_batch

    def held(inputs: np.ndarray) -> np.ndarray:
        entered.set()
        release.wait(10)
        return run_batch(inputs)

    monkeypatch.setattr(model.batcher, "run_batch", held)

    async def late() -> None:
        loop = asyncio.get_running_loop()
        with pytest.raises(DeadlineExceeded):
            await model.classify([Tensor(image)], deadline=loop.time() - 1)

    async def gone() -> None:
        async def disconnected() -> None:
            return None

        busy = asyncio.ensure_future(model.classify([Tensor(image)]))
        while not entered.is_set():
            await asyncio.sleep(0.001)
        with pytest.raises(ClientDisconnect):
            await model.classify([Tensor(image)] * 8, disconnected=disconnected)
        release.set()
        await busy

    before = model.batcher.batches_run
    client.portal.call(late)  # type: ignore[union-attr]
    assert model.batcher.batches_run == before
    client.portal.call(gone)  # type: ignore[union-attr]
    assert model.batcher.batches_run == before + 1  # the busy request's batch alone


def test_a_failing_model_answers_its_request_and_the_others_keep_serving(tiny_store: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tiny_store)), raise_server_exceptions=False) as client:
        model = client.app_state["registry"].get("tiny")

        def broken(**_: object) -> None:
            raise RuntimeError("kernel failed")

        model.function = broken
        response = client.post("/predict?model=tiny", files=upload(SEVEN), headers={"X-Request-ID": "fault-1"})
        assert response.status_code == 500
        assert response.json()["error"]["request_id"] == "fault-1"
        assert "fault-1" in response.json()["error"]["message"]
        assert client.post("/predict?model=fashion_mnist/tiny", files=upload(SEVEN)).status_code == 200
        body = {"instances": [{"b64": SEVEN_B64}] * 4}
        assert client.post("/v1/models/mnist-tiny:predict", json=body).status_code == 500
        assert client.get("/readyz").status_code == 200


def test_required_models_decide_readiness(tiny_store: Path) -> None:
    settings = Settings(models_dir=tiny_store, required_models=["mnist/tiny", "mnist/custom9"])
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and "mnist/custom9" in response.json()["error"]["message"]
        assert client.get("/v2/health/ready").status_code == 503
    with TestClient(create_app(Settings(models_dir=tiny_store, required_models=["mnist/tiny"]))) as client:
        assert client.get("/readyz").status_code == 200


async def _in_flight_then_sigterm(url: str, pid_signal: object) -> tuple[list[int], int]:
    """Four uploads held half-sent (so they are in flight for as long as the test wants), then
    SIGTERM, then `/readyz`, then the rest of each body: their statuses and readiness's."""
    photo = _photo(3000, 2000)
    async with httpx.AsyncClient(base_url=f"http://{url}", timeout=60) as client:
        built = client.build_request(
            "POST", "/predict?model=cifar10/tiny", files=[("image", ("p.jpg", photo, "image/jpeg"))] * 8
        )
        body = built.read()
        headers = {"content-type": built.headers["content-type"], "content-length": str(len(body))}
        release = asyncio.Event()

        async def held_body() -> AsyncIterator[bytes]:
            yield body[: len(body) // 2]
            await release.wait()
            yield body[len(body) // 2 :]

        work = [
            asyncio.create_task(client.post("/predict?model=cifar10/tiny", content=held_body(), headers=headers))
            for _ in range(4)
        ]
        await asyncio.sleep(1.0)
        pid_signal()  # type: ignore[operator]
        await asyncio.sleep(0.2)
        ready = await client.get("/readyz")
        release.set()
        answers = await asyncio.gather(*work)
    return [answer.status_code for answer in answers], ready.status_code


def test_sigterm_fails_readiness_and_finishes_the_requests_in_flight(tiny_store: Path) -> None:
    with serve(tiny_store, DRAIN_SECONDS="30") as (url, process):
        statuses, ready = asyncio.run(_in_flight_then_sigterm(url, lambda: process.send_signal(signal.SIGTERM)))
        assert ready == 503
        assert statuses == [200] * 4
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it stopped on


def test_png_text_chunks_are_bounded(client: TestClient) -> None:
    bomb = _png_text_bomb()
    with pytest.raises(ValueError, match="Decompressed data too large"):
        Image.open(io.BytesIO(bomb))  # Pillow stops at MAX_TEXT_CHUNK, set by the service
    response = client.post("/predict?model=tiny", files=upload(bomb))
    assert response.status_code == 415 and "corrupt" in response.json()["error"]["message"]


def test_the_prediction_routes_are_the_admitted_ones() -> None:
    # Admission counts and bounds what is marked `admitted`: every route that runs a model
    # (the ones behind the API key), and nothing else (health, metrics, models, admin).
    from app.middleware import ADMITTED, api_routes
    from app.security import require_api_key

    routes = list(api_routes(create_app(Settings(models_dir=DATA)).routes))
    keyed = {route.path for route in routes if any(d.call is require_api_key for d in route.dependant.dependencies)}
    assert {route.path for route in routes if route.endpoint in ADMITTED} == keyed
    assert {"/predict", "/v2/models/{name}/infer"} <= keyed and "/readyz" not in keyed
