"""`POST /predict` on the fast path (`app.fast_path`) answers as the routed request does."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tests.conftest import DATA, upload

PNG = (DATA / "7.png").read_bytes()

CASES: dict[str, dict[str, Any]] = {
    "one image": {"params": {"model": "tiny"}, "files": upload(PNG)},
    "two images, top-k and the model input": {
        "params": {"model": "mnist/tiny", "top_k": "3", "include_input": "true", "version": "1"},
        "files": [("image", ("a.png", PNG, "image/png")), ("image", ("b.png", PNG, "image/png"))],
    },
    "JSON base64": {"params": {"model": "tiny"}, "json": {"image": base64.b64encode(PNG).decode()}},
    "unknown model": {"params": {"model": "nope"}, "files": upload(PNG)},
    "invalid top_k": {"params": {"model": "tiny", "top_k": "0"}, "files": upload(PNG)},
    "no model parameter": {"params": {}, "files": upload(PNG)},
    "not an image": {"params": {"model": "tiny"}, "files": upload(b"not an image")},
    "text instead of a file": {"params": {"model": "tiny"}, "data": {"image": "x"}},
    "unsupported content type": {
        "params": {"model": "tiny"},
        "content": b"x",
        "headers": {"content-type": "text/plain"},
    },
    "bad timeout header": {"params": {"model": "tiny"}, "files": upload(PNG), "headers": {"x-request-timeout": "0"}},
}


@pytest.fixture
def routed(client: TestClient) -> Iterator[TestClient]:
    """The same app and loaded models, reached under a root path: `/predict` then goes
    through FastAPI's router, not the fast path."""
    routed_client = TestClient(client.app, root_path="/api", raise_server_exceptions=False)
    # The lifespan's state and event loop (the batchers run there): it is not run twice.
    routed_client.app_state.update(client.app_state)
    routed_client.portal = client.portal
    yield routed_client


@pytest.fixture
def router_calls(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that reached FastAPI's router."""
    calls: list[str] = []
    router = client.app.router  # type: ignore[attr-defined]
    inner = router.middleware_stack

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await inner(scope, receive, send)

    monkeypatch.setattr(router, "middleware_stack", counting)
    return calls


def _tolerant(value: Any) -> Any:
    """`value` with every float replaced by `pytest.approx` of it: the two paths may batch
    the same images differently, and kernels of two batch sizes may differ in the last bit.
    Everything else (class indices, their order, names, strings) is compared exactly."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-7)
    if isinstance(value, dict):
        return {key: _tolerant(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_tolerant(item) for item in value)
    return value


def _answer(response: Any) -> tuple[int, Any, str | None]:
    body = response.json()
    if isinstance(body.get("error"), dict):
        body["error"].pop("request_id")
    return response.status_code, body, response.headers.get("retry-after")


@pytest.mark.parametrize("case", CASES)
def test_fast_path_answers_as_the_router_does(
    client: TestClient, routed: TestClient, router_calls: list[str], case: str
) -> None:
    fast = client.post("/predict", **CASES[case])
    assert router_calls == [], "POST /predict went through the router"
    slow = routed.post("/api/predict", **CASES[case])
    assert router_calls == ["/api/predict"]
    assert _answer(slow) == _tolerant(_answer(fast))
    assert fast.headers["x-request-id"] and fast.headers["content-type"] == slow.headers["content-type"]


def test_fast_path_keeps_metrics_and_request_ids(client: TestClient) -> None:
    labels = {"route": "/predict", "method": "POST", "status": "200"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0
    response = client.post("/predict", params={"model": "tiny"}, files=upload(PNG), headers={"x-request-id": "abc-1"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-1"
    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1


def test_other_routes_are_still_routed(client: TestClient, router_calls: list[str]) -> None:
    assert client.get("/predict").status_code == 405
    assert client.post("/v1/models/tiny:predict", json={"instances": [[[[0.0]] * 28] * 28]}).status_code == 200
    assert router_calls == ["/predict", "/v1/models/tiny:predict"]


def test_a_route_that_needs_more_is_left_to_the_router() -> None:
    from fastapi import Depends, FastAPI

    from app.fast_path import PredictFastPath
    from app.routers import predict
    from app.security import require_api_key

    async def audit() -> None:
        """A dependency the fast path would not run."""

    for dependencies, taken in (([require_api_key], True), ([require_api_key, audit], False)):
        app = FastAPI()
        app.post("/predict", dependencies=[Depends(dependency) for dependency in dependencies])(predict.predict)
        fast_path = PredictFastPath(app, routes=lambda app=app: app.routes)
        assert (fast_path._predict_route() is not None) is taken
