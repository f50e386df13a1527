"""Model versions rolled out without a restart: added, relabelled, removed and refused
while requests keep flowing; version policies; the management routes."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.inference.registry import select_versions
from app.main import create_app
from tests.conftest import DATA, export_tiny_model, serve, upload

SEVEN = (DATA / "7.png").read_bytes()
ADMIN = {"Authorization": "Bearer admin-secret"}


def add_version(store: Path, version: int, *, seed: int) -> None:
    """Export mnist/tiny `version` the way training does: into a hidden folder, renamed at the end."""
    staging = store / "mnist" / "tiny" / f".{version}.tmp"
    export_tiny_model(store, "mnist", "tiny", version, seed=seed).rename(staging)
    staging.rename(store / "mnist" / "tiny" / str(version))


class Traffic:
    """Requests sent back to back from a thread, recording each answer's status and version."""

    def __init__(self, url: str, query: str) -> None:
        self.url, self.query = url, query
        self.answers: list[tuple[int, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                response = client.post(f"http://{self.url}/predict?{self.query}", files=upload(SEVEN))
                self.answers.append((response.status_code, response.json().get("version")))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for_version(self, version: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.answers)
        while time.monotonic() < deadline:
            if any(answer == (200, version) for answer in self.answers[start:][-5:]):
                return
            time.sleep(0.05)
        pytest.fail(f"the answers did not switch to version {version}: {self.answers[-5:]}")


@pytest.mark.slow
def test_versions_are_added_relabelled_and_removed_under_traffic(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    shutil.rmtree(store / "mnist" / "tiny" / "2")
    (store / "mnist" / "tiny" / "labels.json").write_text(json.dumps({"stable": 1}))
    with serve(store, MODEL_POLL_SECONDS="0.3", ADMIN_API_KEYS="admin-secret") as (url, _):
        with Traffic(url, "model=tiny") as newest, Traffic(url, "model=tiny&version=stable") as stable:
            newest.wait_for_version(1)
            add_version(store, 2, seed=1)
            newest.wait_for_version(2)  # picked up by the poll, warmed up, then swapped in
            assert stable.answers[-1] == (200, 1)
            (store / "mnist" / "tiny" / "labels.json").write_text(json.dumps({"stable": 2}))
            stable.wait_for_version(2)
            broken = export_tiny_model(store, "mnist", "tiny", 3, seed=2)
            (broken / "saved_model.pb").write_bytes(b"broken")
            assert httpx.post(f"http://{url}/admin/reload", headers=ADMIN).status_code == 200  # or the poll did
            failed = httpx.get(f"http://{url}/models").json()["failed"]
            assert [(item["model"], item["version"]) for item in failed] == [("mnist/tiny", 3)]
            time.sleep(0.5)
            assert newest.answers[-1] == (200, 2)  # a failed version never replaces one that serves
            shutil.rmtree(broken)
            before_removal = len(stable.answers)
            shutil.rmtree(store / "mnist" / "tiny" / "2")
            newest.wait_for_version(1)
            time.sleep(0.5)
        statuses = Counter(status for status, _ in newest.answers)
        assert set(statuses) == {200}, statuses  # zero failed requests through every swap
        assert {status for status, _ in stable.answers[:before_removal]} == {200}
        assert stable.answers[-1][0] == 404  # the label points at the removed version now
        models = httpx.get(f"http://{url}/models").json()
        tiny = next(item for item in models["models"] if item["model"] == "mnist/tiny")
        assert tiny["versions"] == [1] and tiny["labels"] == {}


def test_version_policies() -> None:
    assert select_versions([3, 1, 2], "all") == [1, 2, 3]
    assert select_versions([3, 1, 2], "latest:1") == [3]
    assert select_versions([3, 1, 2], "latest:2") == [2, 3]
    assert select_versions([3, 1, 2], "specific:1,3,9") == [1, 3]
    with pytest.raises(ValueError):
        select_versions([1], "newest")


def test_a_version_policy_limits_what_serves(tiny_store: Path) -> None:
    settings = Settings(models_dir=tiny_store, model_version_policy={"mnist/tiny": "specific:1"})
    with TestClient(create_app(settings)) as client:
        tiny = next(item for item in client.get("/models").json()["models"] if item["model"] == "mnist/tiny")
        assert tiny["versions"] == [1]


def test_by_default_the_newest_version_and_labelled_ones_serve(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    with TestClient(create_app(Settings(models_dir=store, model_poll_seconds=0))) as client:
        tiny = next(item for item in client.get("/models").json()["models"] if item["model"] == "mnist/tiny")
        assert tiny["versions"] == [2]
        response = client.post("/predict?model=tiny&version=1", files=upload(SEVEN))
        assert response.status_code == 404
        message = response.json()["error"]["message"]
        assert "latest:1" in message and "VERSION_POLICY" in message
    (store / "mnist" / "tiny" / "labels.json").write_text('{"stable": 1}')
    with TestClient(create_app(Settings(models_dir=store, model_poll_seconds=0))) as client:
        tiny = next(item for item in client.get("/models").json()["models"] if item["model"] == "mnist/tiny")
        assert tiny["versions"] == [1, 2]
        assert client.post("/predict?model=tiny&version=stable", files=upload(SEVEN)).json()["version"] == 1


def test_management_needs_the_admin_key(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    settings = Settings(
        models_dir=store,
        api_keys=["user-key"],
        admin_api_keys=["admin-secret"],
        model_poll_seconds=0,
        version_policy="all",
    )
    with TestClient(create_app(settings)) as client:
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/reload", headers={"X-API-Key": "user-key"}).status_code == 403
        assert client.post("/admin/reload", headers=ADMIN).json() == {"loaded": [], "unloaded": [], "failed": []}
        response = client.post("/admin/models/mnist/tiny/versions/2/unload", headers={"X-API-Key": "admin-secret"})
        assert response.json()["unloaded"] == ["mnist/tiny v2"]
        user = {"X-API-Key": "user-key"}
        assert client.post("/predict?model=tiny", files=upload(SEVEN), headers=user).json()["version"] == 1
        assert client.post("/admin/models/mnist/tiny/versions/2/load", headers=ADMIN).json()["loaded"] == [
            "mnist/tiny v2"
        ]
        assert client.post("/predict?model=tiny", files=upload(SEVEN), headers=user).json()["version"] == 2
        assert client.post("/admin/models/mnist/tiny/versions/9/load", headers=ADMIN).status_code == 404
    with TestClient(create_app(Settings(models_dir=store))) as client:
        assert client.post("/admin/reload", headers=ADMIN).status_code == 403  # no admin key set: closed


def test_tf_serving_labels_route(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    (store / "mnist" / "tiny" / "labels.json").write_text(json.dumps({"canary": 2, "stable": 1}))
    with TestClient(create_app(Settings(models_dir=store))) as client:
        body = {"instances": [[[0.0] * 28] * 28]}
        by_label = client.post("/v1/models/mnist-tiny/labels/stable:predict", json=body).json()
        by_number = client.post("/v1/models/mnist-tiny/versions/1:predict", json=body).json()
        assert by_label == by_number
        assert client.post("/v1/models/mnist-tiny/labels/nosuch:predict", json=body).status_code == 404
        status = client.get("/v1/models/mnist-tiny/labels/canary").json()["model_version_status"]
        assert [item["version"] for item in status] == ["2"]
        metadata = client.get("/v2/models/mnist-tiny/versions/canary").json()
        assert metadata["versions"] == ["2"]
        tiny = next(item for item in client.get("/models").json()["models"] if item["model"] == "mnist/tiny")
        assert tiny["labels"] == {"canary": 2, "stable": 1}


def test_unloading_reaches_every_worker_and_survives_a_restart(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    env = {"VERSION_POLICY": "all", "ADMIN_API_KEYS": "admin-secret", "MODEL_POLL_SECONDS": "0.5"}

    def versions_served(url: str) -> Counter[int]:
        served: Counter[int] = Counter()
        for _ in range(40):  # a new connection each time: SO_REUSEPORT spreads them over the workers
            answer = httpx.post(f"http://{url}/predict", params={"model": "tiny"}, files=upload(SEVEN), timeout=30)
            served[answer.json()["version"]] += 1
        return served

    with serve(store, "--workers", "2", launcher="app.serve", **env) as (url, _):
        assert versions_served(url) == Counter({2: 40})
        response = httpx.post(f"http://{url}/admin/models/mnist/tiny/versions/2/unload", headers=ADMIN, timeout=60)
        assert response.status_code == 200
        assert json.loads((store / "mnist" / "tiny" / "unloaded.json").read_text()) == [2]
        deadline = time.monotonic() + 60  # every worker's next poll of the store
        while (served := versions_served(url)) != Counter({1: 40}) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert served == Counter({1: 40})
    with serve(store, "--workers", "2", launcher="app.serve", **env) as (url, _):
        assert versions_served(url) == Counter({1: 40})
        assert httpx.post(f"http://{url}/admin/models/mnist/tiny/versions/2/load", headers=ADMIN, timeout=60).json()[
            "loaded"
        ] == ["mnist/tiny v2"]
        assert not (store / "mnist" / "tiny" / "unloaded.json").exists()


def test_unloading_in_a_store_that_cannot_be_written_is_refused_clearly(tiny_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    (store / "mnist" / "tiny" / "unloaded.json.tmp").mkdir()  # fails to be written even by root
    settings = Settings(models_dir=store, admin_api_keys=["admin-secret"], model_poll_seconds=0)
    with TestClient(create_app(settings)) as client:
        response = client.post("/admin/models/mnist/tiny/versions/2/unload", headers=ADMIN)
        assert response.status_code == 409
        assert "cannot be written" in response.json()["error"]["message"]
        assert client.post("/predict?model=tiny", files=upload(SEVEN)).json()["version"] == 2
