"""Access control: API keys on the prediction routes of every protocol, in each protocol's
error format; health routes open; docs and CORS by setting."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.security import KeyRing
from tests.conftest import DATA, upload

SEVEN = (DATA / "7.png").read_bytes()
V2_BODY = {
    "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(SEVEN).decode()]}]
}
V1_BODY = {"instances": [{"b64": base64.b64encode(SEVEN).decode()}]}


@pytest.fixture(scope="module")
def locked(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text("# one key per line\nfile-key\n\n")
    settings = Settings(models_dir=tiny_store, api_keys=["env-key"], api_keys_file=key_file, docs_enabled=False)
    with TestClient(create_app(settings)) as client:
        yield client


def test_prediction_routes_need_a_key_in_every_protocol(locked: TestClient) -> None:
    native = locked.post("/predict?model=tiny", files=upload(SEVEN))
    assert native.status_code == 401 and native.json()["error"]["code"] == "unauthorized"
    assert native.headers["www-authenticate"] == "Bearer"
    v1 = locked.post("/v1/models/mnist-tiny:predict", json=V1_BODY)
    assert v1.status_code == 401 and isinstance(v1.json()["error"], str)
    v2 = locked.post("/v2/models/mnist-tiny/infer", json=V2_BODY)
    assert v2.status_code == 401 and isinstance(v2.json()["error"], str)
    assert locked.post("/predict?model=tiny", files=upload(SEVEN), headers={"X-API-Key": "wrong"}).status_code == 401


@pytest.mark.parametrize(
    "headers", [{"Authorization": "Bearer env-key"}, {"X-API-Key": "env-key"}, {"authorization": "bearer file-key"}]
)
def test_a_known_key_is_accepted(locked: TestClient, headers: dict[str, str]) -> None:
    assert locked.post("/predict?model=tiny", files=upload(SEVEN), headers=headers).status_code == 200
    assert locked.post("/v1/models/mnist-tiny:predict", json=V1_BODY, headers=headers).status_code == 200
    assert locked.post("/v2/models/mnist-tiny/infer", json=V2_BODY, headers=headers).status_code == 200


def test_health_stays_open_and_docs_can_be_turned_off(locked: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"):
        assert locked.get(path).status_code == 200, path
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert locked.get(path).status_code == 404, path


def test_access_control_is_off_by_default(client: TestClient) -> None:
    assert client.post("/predict?model=tiny", files=upload(SEVEN)).status_code == 200
    assert client.get("/docs").status_code == 200


def test_keys_are_kept_hashed() -> None:
    keys = KeyRing(["user-key"], ["admin-key"])
    assert "user-key" not in repr(vars(keys)) and b"user-key" not in b"".join(keys._api)
    assert keys.may_predict("user-key") and keys.may_predict("admin-key") and not keys.may_predict("other")
    assert keys.is_admin("admin-key") and not keys.is_admin("user-key")
    assert "user-key" not in repr(Settings(api_keys=["user-key"]))


def test_cors_origins(tiny_store: Path) -> None:
    settings = Settings(models_dir=tiny_store, cors_origins=["https://demo.example"])
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/predict",
            headers={"Origin": "https://demo.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://demo.example"
        other = client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # The prediction itself and its errors, which take the fast path past the router.
        origin = {"Origin": "https://demo.example"}
        for query, status in (("model=tiny", 200), ("model=nope", 404)):
            answer = client.post(f"/predict?{query}", files=upload(SEVEN), headers=origin)
            assert answer.status_code == status
            assert answer.headers["access-control-allow-origin"] == "https://demo.example"
            assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
