"""The TensorFlow Serving-compatible surface answers as TF Serving does."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import DATA

SEVEN_B64 = base64.b64encode((DATA / "7.png").read_bytes()).decode()
SEVEN_TENSOR = (np.asarray(Image.open(DATA / "7.png"), dtype=np.float32) / 255.0)[..., np.newaxis].tolist()


def _native_class(client: TestClient) -> int:
    """The class `/predict` gives tests/data/7.png: every protocol must agree with it."""
    return client.post("/predict?model=tiny", files={"image": ("7.png", (DATA / "7.png").read_bytes())}).json()[
        "class_index"
    ]


def test_row_format_with_b64_image_and_tensor(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-tiny:predict", json={"instances": [{"b64": SEVEN_B64}, SEVEN_TENSOR]})
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for row in predictions:
        assert len(row) == 10
        assert int(np.argmax(row)) == _native_class(client)
        assert sum(row) == pytest.approx(1.0, abs=1e-4)


def test_columnar_format_on_a_version(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-tiny/versions/1:predict", json={"inputs": [SEVEN_TENSOR]})
    assert response.status_code == 200
    rows = client.post("/v1/models/mnist-tiny/versions/1:predict", json={"instances": [SEVEN_TENSOR]}).json()
    assert response.json()["outputs"] == rows["predictions"]


def test_named_input_instance(client: TestClient) -> None:
    metadata = client.get("/v1/models/mnist-tiny/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (input_name,) = signature["inputs"]
    assert signature["inputs"][input_name]["tensor_shape"]["dim"][1:] == [
        {"size": "28", "name": ""},
        {"size": "28", "name": ""},
        {"size": "1", "name": ""},
    ]
    response = client.post("/v1/models/mnist-tiny:predict", json={"instances": [{input_name: SEVEN_TENSOR}]})
    assert int(np.argmax(response.json()["predictions"][0])) == _native_class(client)


def test_model_status(client: TestClient) -> None:
    body = client.get("/v1/models/mnist-tiny").json()
    assert [status["version"] for status in body["model_version_status"]] == ["2", "1"]
    assert body["model_version_status"][1] == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    assert client.get("/v1/models/mnist-tiny/versions/1").status_code == 200
    assert client.get("/v1/models/mnist-tiny/versions/9").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/models/mnist-nosuch:predict", {"instances": [SEVEN_TENSOR]}, 404),
        ("/v1/models/mnist-tiny/versions/5:predict", {"instances": [SEVEN_TENSOR]}, 404),
        ("/v1/models/mnist-tiny:predict", {"instances": [[1.0, 2.0]]}, 400),
        ("/v1/models/mnist-tiny:predict", {"instances": [[[float("nan")] * 28] * 28]}, 400),
        ("/v1/models/mnist-tiny:predict", {"instances": [[[3e38] * 28] * 28]}, 400),  # overflows the network
        ("/v1/models/mnist-tiny:predict", {"instances": [], "inputs": []}, 400),
        ("/v1/models/mnist-tiny:predict", {"instances": []}, 400),
        ("/v1/models/mnist-tiny:predict", {"instances": [{"b64": "!!!"}]}, 400),
        ("/v1/models/mnist-tiny:predict", {"instances": [{"b64": base64.b64encode(b"text").decode()}]}, 415),
        ("/v1/models/mnist-tiny:predict", {"signature_name": "other", "instances": [SEVEN_TENSOR]}, 400),
        ("/v1/models/mnist-tiny:predict", {"instances": "nope"}, 400),
    ],
)
def test_errors_have_the_tf_serving_shape(client: TestClient, path: str, body: object, status: int) -> None:
    response = client.post(path, content=json.dumps(body).encode())  # json.dumps writes NaN as clients do
    assert response.status_code == status, response.text
    assert isinstance(response.json()["error"], str) and response.json()["error"]


def test_malformed_json_is_a_400(client: TestClient) -> None:
    response = client.post("/v1/models/mnist-tiny:predict", content=b"{not json")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_curl_form_content_type_is_read_as_json(client: TestClient) -> None:
    response = client.post(
        "/v1/models/mnist-tiny:predict",
        content=json.dumps({"instances": [{"b64": SEVEN_B64}]}).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},  # what `curl -d` sends
    )
    assert response.status_code == 200
