"""The real app over the shipped models: predictions, model listing, errors."""

from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from benchmarks.uploads import load_test_images
from tests.conftest import DATA, STORE, upload

SHIPPED_MNIST = {"mlp", "lenet", "custom1", "custom2"}


def test_seven_is_a_seven(shipped_client: TestClient) -> None:
    response = shipped_client.post("/predict?model=custom2", files=upload(DATA / "7.png"))
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "mnist/custom2"
    assert body["dataset"] == "mnist"
    assert body["class_index"] == 7
    assert body["class_name"] == "7"
    assert body["confidence"] > 0.9
    assert [item["class_name"] for item in body["probabilities"]] == list("0123456789")
    assert response.headers["x-request-id"]


def test_first_100_mnist_test_digits(shipped_client: TestClient) -> None:
    correct = 0
    for path in sorted((DATA / "mnist_test").glob("*.png")):
        label = int(path.stem.split("_")[1])
        body = shipped_client.post("/predict?model=custom2", files=upload(path)).json()
        assert math.isclose(sum(item["probability"] for item in body["probabilities"]), 1.0, abs_tol=1e-4)
        correct += body["class_index"] == label
    assert correct >= 99


@pytest.mark.parametrize("arch", sorted(path.name for path in (STORE / "mnist").iterdir() if path.is_dir()))
def test_every_shipped_model_answers(shipped_client: TestClient, arch: str) -> None:
    body = shipped_client.post(f"/predict?model=mnist/{arch}", files=upload(DATA / "7.png")).json()
    assert body["model"] == f"mnist/{arch}"
    assert body["class_index"] == 7
    assert math.isclose(sum(item["probability"] for item in body["probabilities"]), 1.0, abs_tol=1e-4)


def test_models_lists_the_shipped_models_with_accuracies(shipped_client: TestClient) -> None:
    models = {
        item["arch"]: item for item in shipped_client.get("/models").json()["models"] if item["dataset"] == "mnist"
    }
    assert set(models) >= SHIPPED_MNIST
    for item in models.values():
        assert 0.9 < item["test_accuracy"] <= 1.0
        assert item["metrics"]["test"]["accuracy"] == item["test_accuracy"]
        assert item["input_shape"] == [28, 28, 1]
        assert item["parameter_count"] > 0
    assert models["custom2"]["test_accuracy"] >= 0.995


def test_models_lists_every_model_in_the_store_with_its_newest_version(shipped_client: TestClient) -> None:
    stored: dict[tuple[str, str], list[int]] = {}
    for saved_model in sorted(STORE.glob("*/*/*/saved_model.pb")):
        version = saved_model.parent
        stored.setdefault((version.parent.parent.name, version.parent.name), []).append(int(version.name))
    listed = {(item["dataset"], item["arch"]): item for item in shipped_client.get("/models").json()["models"]}
    assert set(listed) == set(stored)
    for key, item in listed.items():
        assert item["versions"] == [max(stored[key])]  # VERSION_POLICY's default, latest:1
        assert item["version"] == max(stored[key])
        assert 0.1 < item["test_accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("model", "dataset", "first_class", "last_class", "min_correct"),
    [
        ("fashion_mnist/custom2", "fashion_mnist", "T-shirt/top", "Ankle boot", 17),
        ("cifar10/vgg_bn", "cifar10", "airplane", "truck", 13),
    ],
)
def test_dataset_test_images_come_back_with_their_class_names(
    shipped_client: TestClient,
    data_dir: Path,
    model: str,
    dataset: str,
    first_class: str,
    last_class: str,
    min_correct: int,
) -> None:
    images, labels = load_test_images(dataset, data_dir, 20)
    correct = 0
    for pixels, label in zip(images, labels, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(np.squeeze(pixels)).save(buffer, format="PNG")
        body = shipped_client.post(f"/predict?model={model}", files=upload(buffer.getvalue())).json()
        class_names = [item["class_name"] for item in body["probabilities"]]
        assert (class_names[0], class_names[-1]) == (first_class, last_class)
        assert body["class_name"] == class_names[body["class_index"]]
        correct += body["class_name"] == class_names[int(label)]
    assert correct >= min_correct


def test_model_detail_is_the_metadata(shipped_client: TestClient) -> None:
    body = shipped_client.get("/models/mnist/custom2").json()
    assert body["metadata"]["parameter_count"] == 436_202
    assert body["metadata"]["quick"] is False
    assert len(body["metadata"]["confusion_matrix"]) == 10
    report = shipped_client.get(body["report_urls"][0])
    assert report.status_code == 200
    assert report.headers["content-type"] == "image/png"


def test_dataset_version_and_top_k_parameters(shipped_client: TestClient) -> None:
    response = shipped_client.post(
        "/predict?model=custom2&dataset=mnist&version=1&top_k=3", files=upload(DATA / "7.png")
    )
    body = response.json()
    assert body["version"] == 1
    assert next(item["class_index"] for item in body["top_k"]) == 7
    probabilities = [item["probability"] for item in body["top_k"]]
    assert probabilities == sorted(probabilities, reverse=True) and len(probabilities) == 3


def test_a_dataset_name_is_its_default_model_on_every_protocol(shipped_client: TestClient) -> None:
    from app.config import Settings

    defaults = Settings().default_models
    native = shipped_client.post("/predict?model=mnist", files=upload(DATA / "7.png")).json()
    assert native["model"] == f"mnist/{defaults['mnist']}" and native["class_index"] == 7
    listed = {item["model"] for item in shipped_client.get("/models").json()["models"] if item["default"]}
    assert listed == {f"{dataset}/{arch}" for dataset, arch in defaults.items()}
    status = shipped_client.get("/v1/models/cifar10").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    v2 = shipped_client.get("/v2/models/fashion_mnist").json()
    assert v2["name"] == "fashion_mnist" and v2["inputs"][0]["shape"] == [-1, 28, 28, 1]


def test_include_input_returns_what_the_model_received(shipped_client: TestClient) -> None:
    from app.inference.preprocessing import prepare_image

    response = shipped_client.post("/predict?model=custom2&include_input=true", files=upload(DATA / "7.png"))
    model_input = Image.open(io.BytesIO(base64.b64decode(response.json()["model_input"])))
    assert model_input.format == "PNG" and model_input.size == (28, 28) and model_input.mode == "L"
    expected = prepare_image((DATA / "7.png").read_bytes(), method="mnist", shape=(28, 28, 1), max_pixels=10**6)
    assert np.abs(np.asarray(model_input) / 255.0 - expected[..., 0]).max() <= 0.5 / 255 + 1e-6
    cifar = shipped_client.post("/predict?model=cifar10&include_input=true", files=upload(DATA / "7.png")).json()
    assert Image.open(io.BytesIO(base64.b64decode(cifar["model_input"]))).size == (32, 32)
    assert "model_input" not in shipped_client.post("/predict?model=custom2", files=upload(DATA / "7.png")).json()


def test_health_and_readiness(shipped_client: TestClient) -> None:
    assert shipped_client.get("/healthz").json() == {"status": "ok"}
    ready = shipped_client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["models"] >= 4


def test_docs_and_openapi(shipped_client: TestClient) -> None:
    assert shipped_client.get("/docs").status_code == 200
    schema = shipped_client.get("/openapi.json").json()
    assert "/predict" in schema["paths"]
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize(
    ("url", "files", "status", "code"),
    [
        ("/predict?model=nosuch", upload(DATA / "7.png"), 404, "model_not_found"),
        ("/predict?model=custom2&version=99", upload(DATA / "7.png"), 404, "model_not_found"),
        (
            "/predict?model=custom2",
            upload(b"just some text\n", "notes.txt", "text/plain"),
            415,
            "unsupported_media_type",
        ),
        ("/predict?model=custom2", upload(b"", "empty.png"), 415, "unsupported_media_type"),
        (
            "/predict?model=custom2",
            {"picture": ("7.png", (DATA / "7.png").read_bytes(), "image/png")},
            422,
            "validation_error",
        ),
        ("/predict?model=custom2", None, 422, "validation_error"),
        ("/predict", upload(DATA / "7.png"), 422, "validation_error"),
        ("/predict?model=custom2&version=0", upload(DATA / "7.png"), 404, "model_not_found"),
        ("/predict?model=custom2&version=1.5", upload(DATA / "7.png"), 422, "validation_error"),
    ],
)
def test_bad_requests(shipped_client: TestClient, url: str, files: dict | None, status: int, code: str) -> None:
    response = shipped_client.post(url, files=files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
