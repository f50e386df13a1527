"""`POST /explain`: attribution maps from the served SavedModels, their own cost limits, and
a sanity check that the maps mean something (Adebayo et al. 2018, "Sanity Checks for
Saliency Maps"): a trained network's maps lie on the digit's strokes and differ from those
of the same architecture with random weights."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.inference.decoding import load_image, open_image
from app.inference.explain import explain
from app.inference.model import ServedModel
from app.inference.preprocessing import preprocess
from app.main import create_app
from tests.conftest import DATA, STORE, upload

SEVEN = DATA / "7.png"
DIGITS = sorted((DATA / "mnist_test").glob("*.png"))[:20]


def _png(text: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_a_seven_is_explained_by_its_strokes(shipped_client: TestClient) -> None:
    response = shipped_client.post("/explain?model=custom2", files=upload(SEVEN))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["class_index"] == 7 and body["explained_class_index"] == 7
    assert body["method"] == "integrated_gradients" and body["baselines"] == ["black", "blurred"]
    attribution = np.asarray(body["attribution"], dtype=np.float32)
    assert attribution.shape == (28, 28)
    total, difference = body["completeness"]
    assert abs(total - difference) < 0.05  # the attributions add up to the change of probability
    model_input = np.asarray(_png(body["model_input"]), dtype=np.float32) / 255.0
    strokes = model_input > 0.3
    positive = np.clip(attribution, 0, None)
    assert positive[strokes].sum() > 0.5 * positive.sum()  # on the tenth of the pixels that are ink
    assert _png(body["overlay"]).size == (224, 224)


def test_any_class_and_occlusion_on_request(shipped_client: TestClient) -> None:
    response = shipped_client.post("/explain?model=custom2&class_index=3&method=occlusion", files=upload(SEVEN))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explained_class_index"] == 3 and body["explained_class_name"] == "3"
    assert body["method"] == "occlusion" and body["completeness"] is None


def test_a_cifar_photo_through_the_ensemble_is_explained_whole(tmp_path: Path) -> None:
    # The ensemble's first explanation traces the gradient of four networks, each averaged
    # over flips and translations: tens of seconds on a busy machine, so a generous limit.
    store = tmp_path / "store"
    (store / "cifar10").mkdir(parents=True)
    (store / "cifar10" / "ensemble").symlink_to(STORE / "cifar10" / "ensemble")
    photo = Image.new("RGB", (96, 64), (90, 140, 220))
    photo.paste((110, 110, 115), (20, 36, 80, 50))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG")
    settings = Settings(models_dir=store, explain_timeout_seconds=600, warmup=False)
    with TestClient(create_app(settings)) as client:
        response = client.post("/explain?model=cifar10/ensemble&steps=16", files=upload(buffer.getvalue(), "p.jpg"))
        assert response.status_code == 200, response.text
        assert np.asarray(response.json()["attribution"]).shape == (32, 32)
        assert response.json()["method"] == "integrated_gradients"


@pytest.mark.parametrize(
    ("query", "files", "status"),
    [
        ("model=custom2&class_index=10", 1, 400),  # ten classes: 0..9
        ("model=custom2&steps=1000", 1, 422),
        ("model=custom2&method=shap", 1, 422),
        ("model=custom2", 2, 413),  # EXPLAIN_MAX_IMAGES
        ("model=nosuch", 1, 404),
    ],
)
def test_bad_requests_get_a_clear_4xx(shipped_client: TestClient, query: str, files: int, status: int) -> None:
    parts = [("image", ("7.png", SEVEN.read_bytes(), "image/png"))] * files
    response = shipped_client.post(f"/explain?{query}", files=parts)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_explanations_have_their_own_bounds_and_metrics(tiny_store: Path) -> None:
    from app.routers import explain as explain_router

    settings = Settings(models_dir=tiny_store, explain_timeout_seconds=1e-9, explain_max_in_flight=1)
    with TestClient(create_app(settings)) as client:
        late = client.post("/explain?model=tiny", files=upload(SEVEN))
        assert late.status_code == 504 and "EXPLAIN_TIMEOUT_SECONDS" in late.json()["error"]["message"]
        explain_router._BOUND.computing = 1  # one explanation already computing
        try:
            busy = client.post("/explain?model=tiny", files=upload(SEVEN))
        finally:
            explain_router._BOUND.computing = 0
        assert busy.status_code == 503 and busy.headers["retry-after"]
        assert client.post("/predict?model=tiny", files=upload(SEVEN)).status_code == 200  # predictions go on
        text = client.get("/metrics").text
        assert (
            'explanations_total{method="integrated_gradients",model="mnist/tiny",outcome="deadline_exceeded"}' in text
        )
        assert 'outcome="overloaded"' in text


def _input(path: Path) -> np.ndarray:
    return preprocess(load_image(open_image(path.read_bytes(), max_pixels=10**6)), "mnist", (28, 28, 1))


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    ranks = [np.argsort(np.argsort(values.ravel())) for values in (first, second)]
    return float(np.corrcoef(*ranks)[0, 1])


def test_maps_of_the_trained_network_differ_from_those_of_random_weights() -> None:
    # The model-randomisation test of Adebayo et al. (2018): a map that barely changes when
    # the weights are random explains the input, not the model. The trained custom2 against
    # the same architecture freshly initialised, on 20 MNIST test digits. Signed maps are
    # compared: integrated gradients multiplies by (input - baseline), so the magnitudes of
    # any network's map follow the strokes (the paper's finding for gradient x input);
    # which strokes raise a class and which lower it is what the training decides.
    import keras

    from training.architectures import build_model

    settings = Settings()
    trained = ServedModel.load(
        STORE / "mnist" / "custom2" / "1", batching=settings.batching, limits=settings.input_limits, warm_up=False
    )
    keras.utils.set_random_seed(0)
    random_model = build_model("custom2", (28, 28, 1), 10)
    random = SimpleNamespace(
        function=lambda images: {"probabilities": random_model(images, training=False)},
        metadata=SimpleNamespace(input_name="images", output_name="probabilities"),
        predict_batch=lambda batch: np.asarray(random_model(batch, training=False)),
    )
    against_random, against_other_class, on_strokes = [], [], []
    for path in DIGITS:
        image = _input(path)
        label = int(path.stem.split("_")[1])
        mine = explain(trained, image, label).attribution
        against_random.append(_spearman(mine, explain(random, image, label).attribution))
        against_other_class.append(_spearman(mine, explain(trained, image, (label + 1) % 10).attribution))
        positive = np.clip(mine, 0, None)
        on_strokes.append(positive[image[..., 0] > 0.3].sum() / max(positive.sum(), 1e-12))
    assert np.median(against_random) < 0.3, against_random
    assert np.median(against_other_class) < 0.3, against_other_class
    assert np.median(on_strokes) > 0.6, on_strokes
