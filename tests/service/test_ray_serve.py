"""The service on Ray Serve: a local Ray instance, 2 replicas behind Ray's HTTP proxy."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import DATA, STORE, _free_port

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The proxy's URL, with mnist/custom2 deployed on 2 replicas; Ray is shut down after."""
    from ray import serve

    from app.config import Settings
    from app.ray_serve import build_application

    store = tmp_path_factory.mktemp("ray-store")
    (store / "mnist").mkdir()
    (store / "mnist" / "custom2").symlink_to(STORE / "mnist" / "custom2")
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = Settings(models_dir=store, model_poll_seconds=0)
        serve.run(build_application(settings, replicas=2, num_cpus=0.5))
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
    assert not ray.is_initialized()


def test_the_curl_example_through_ray(ray_url: str) -> None:
    answer = subprocess.run(
        ["curl", "-sf", "-F", f"image=@{DATA / '7.png'}", f"{ray_url}/predict?model=custom2"],
        capture_output=True,
        check=True,
        text=True,
    )
    assert '"class_name":"7"' in answer.stdout


def test_a_burst_is_spread_over_both_replicas_and_every_answer_is_right(ray_url: str) -> None:
    digits = sorted((DATA / "mnist_test").glob("*.png"))[:16] * 4

    def classify(path: Path) -> tuple[int, int, str]:
        response = httpx.post(f"{ray_url}/predict?model=custom2", files={"image": path.read_bytes()}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()["class_index"], int(path.name.split("_")[1][0]), response.headers["x-replica"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(classify, digits))
    assert all(predicted == label for predicted, label, _ in answers), answers
    assert len({replica for _, _, replica in answers}) == 2
    assert httpx.get(f"{ray_url}/readyz").json()["status"] == "ready"
