"""The Open Inference Protocol (KServe v2) against the official client, tritonclient.http,
talking to a real server process on 127.0.0.1 over the tiny store."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import DATA

SEVEN = (DATA / "7.png").read_bytes()


@pytest.fixture(scope="module")
def client(live_server: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(live_server) as triton_client:
        yield triton_client


def _native(server: str, model: str = "mnist/tiny") -> list[float]:
    response = httpx.post(
        f"http://{server}/predict", params={"model": model, "version": 1}, files={"image": ("7.png", SEVEN)}
    )
    return [item["probability"] for item in response.json()["probabilities"]]


def _seven_tensor() -> np.ndarray:
    """tests/data/7.png as the model input, via the service's own preprocessing."""
    from app.inference.preprocessing import prepare_image

    return prepare_image(SEVEN, method="mnist", shape=(28, 28, 1), max_pixels=10**6)[np.newaxis]


def test_liveness_readiness_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mnist-tiny")
    assert client.is_model_ready("mnist-tiny", "1")
    assert not client.is_model_ready("mnist-nosuch")
    assert set(client.get_server_metadata()["extensions"]) >= {"binary_tensor_data", "classification"}


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("mnist-tiny")
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "tensorflow_savedmodel"
    assert {item["name"]: (item["datatype"], item["shape"]) for item in metadata["inputs"]} == {
        "images": ("FP32", [-1, 28, 28, 1]),
        "image_bytes": ("BYTES", [-1]),
    }
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert client.get_model_metadata("cifar10-tiny", "1")["inputs"][0]["shape"] == [-1, 32, 32, 3]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_input(client: triton.InferenceServerClient, live_server: str, binary: bool) -> None:
    images = np.concatenate([_seven_tensor()] * 3)
    tensor = triton.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    output = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer("mnist-tiny", [tensor], model_version="1", outputs=[output], request_id="r-1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 10)
    assert result.get_response()["id"] == "r-1"
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_allclose(probabilities[0], _native(live_server), atol=1e-6)  # the same pipeline as /predict


def test_bytes_input_binary_by_default(client: triton.InferenceServerClient, live_server: str) -> None:
    tensor = triton.InferInput("image_bytes", [2], "BYTES")
    tensor.set_data_from_numpy(np.array([SEVEN, SEVEN], dtype=np.object_))
    result = client.infer("mnist-tiny", [tensor], model_version="1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities[1], _native(live_server), atol=1e-6)


def test_bytes_input_as_base64_json(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([base64.b64encode(SEVEN)], dtype=np.object_), binary_data=False)
    result = client.infer("fashion_mnist-tiny", [tensor], outputs=[triton.InferRequestedOutput("probabilities", False)])
    assert result.as_numpy("probabilities").shape == (1, 10)


def test_classification_extension(client: triton.InferenceServerClient, live_server: str) -> None:
    tensor = triton.InferInput("image_bytes", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([SEVEN], dtype=np.object_))
    output = triton.InferRequestedOutput("probabilities", class_count=3)
    labels = client.infer("mnist-tiny", [tensor], model_version="1", outputs=[output]).as_numpy("probabilities")
    assert labels.shape == (1, 3)
    value, index, name = labels[0][0].decode().split(":")
    native = _native(live_server)
    assert int(index) == int(np.argmax(native)) and name == str(index)
    assert float(value) == pytest.approx(max(native), rel=1e-5)


def test_wrong_shape_is_a_400(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("images", [1, 32, 32, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(InferenceServerException, match="does not match the model input") as error:
        client.infer("mnist-tiny", [tensor])
    assert error.value.status() == "400"


def test_a_tensor_that_overflows_the_model_is_a_400(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("images", [1, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(np.full((1, 28, 28, 1), 3e38, np.float32))  # finite, but the network overflows
    with pytest.raises(InferenceServerException, match="probabilities are not finite") as error:
        client.infer("mnist-tiny", [tensor])
    assert error.value.status() == "400"


def test_unknown_model_is_a_404(client: triton.InferenceServerClient) -> None:
    tensor = triton.InferInput("images", [1, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(InferenceServerException, match="no model mnist/nosuch") as error:
        client.infer("mnist-nosuch", [tensor])
    assert error.value.status() == "404"
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("mnist-tiny", "9")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{oops", 400),
        (b"[]", 400),
        (b'{"inputs": []}', 400),
        (b'{"inputs": [{"name": "images", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [1.0]}]}', 400),
        (b'{"inputs": [{"name": "images", "shape": [1, 28, 28, 1], "datatype": "INT8", "data": [1]}]}', 400),
        (b'{"inputs": [{"name": "other", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}', 400),
        (b'{"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]}', 400),
        (b'{"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES", "data": ["dGV4dA=="]}]}', 415),
    ],
)
def test_bad_requests_answer_the_protocol_error(live_server: str, body: bytes, status: int) -> None:
    response = httpx.post(f"http://{live_server}/v2/models/mnist-tiny/infer", content=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"} and response.json()["error"]
