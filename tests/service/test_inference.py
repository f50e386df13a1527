"""The inference pipeline: batching is real and changes no answer; padding to buckets."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi.testclient import TestClient

from app.inference import ServedModel, Tensor
from app.inference.model import batch_buckets
from app.inference.preprocessing import prepare_image
from tests.conftest import DATA


def _model(client: TestClient, name: str = "tiny") -> ServedModel:
    return client.app_state["registry"].get(name)


async def _one_by_one(model: ServedModel, images: list[np.ndarray]) -> list[np.ndarray]:
    """Classify each image as its own concurrent request."""
    results = await asyncio.gather(*(model.classify([Tensor(x)]) for x in images))
    return [result.probabilities[0] for result in results]


def _digits(count: int) -> list[np.ndarray]:
    paths = sorted((DATA / "mnist_test").glob("*.png"))[:count]
    return [prepare_image(path.read_bytes(), method="mnist", shape=(28, 28, 1), max_pixels=10**6) for path in paths]


def test_concurrent_requests_share_model_calls(client: TestClient) -> None:
    model = _model(client)
    assert model.batcher is not None
    images = _digits(24)
    before = model.batcher.batches_run

    outputs = client.portal.call(_one_by_one, model, images)  # type: ignore[union-attr]
    calls = model.batcher.batches_run - before
    assert len(outputs) == 24
    assert 1 <= calls <= 3  # 24 concurrent requests, max batch 32: not 24 calls


def test_batched_and_unbatched_answers_are_identical(client: TestClient) -> None:
    model = _model(client)
    images = _digits(20)

    batched = client.portal.call(_one_by_one, model, images)  # type: ignore[union-attr]
    for image, together in zip(images, batched, strict=True):
        alone = model.predict_batch(image[np.newaxis])[0]
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-6)
        assert int(np.argmax(together)) == int(np.argmax(alone))


def test_batches_are_padded_to_fixed_buckets(client: TestClient) -> None:
    model = _model(client)
    assert model.buckets == batch_buckets(32) == (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    images = np.stack(_digits(5))
    assert model.predict_batch(images).shape == (5, 10)
    big = np.concatenate([images] * 14)  # 70 images: split into buckets of 32
    assert model.predict_batch(big).shape == (70, 10)
    np.testing.assert_allclose(model.predict_batch(big)[:5], model.predict_batch(images), atol=1e-6)
