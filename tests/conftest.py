"""Shared fixtures: a tiny model store for the service tests, the shipped store for the
quality tests, clients over the real app, test images.

Service tests run on `client`: the real app over a store of tiny models (a few hundred
parameters, random weights) exported into a temporary folder by training's own export,
so they start in seconds. Only tests of model quality use `shipped_client`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
STORE = PROJECT_ROOT / "models_store"
DATA_DIR = Path(os.environ.get("DATA_DIR", PROJECT_ROOT.parent / "shared" / "datasets"))

TINY_MODELS = {
    "mnist": ((28, 28, 1), [str(digit) for digit in range(10)], "mnist"),
    "fashion_mnist": (
        (28, 28, 1),
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "fashion_mnist",
    ),
    "cifar10": (
        (32, 32, 3),
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        "cifar10",
    ),
}
"""dataset: (input shape, class names, preprocessing) of the tiny test models."""


def export_tiny_model(store: Path, dataset: str, arch: str = "tiny", version: int = 1, *, seed: int = 0) -> Path:
    """Export a tiny random-weight classifier to `store/<dataset>/<arch>/<version>/` with valid metadata.

    Returns:
        The version folder.
    """
    import keras

    from modelstore import ModelMetadata
    from training.export import save_serving_model

    input_shape, class_names, preprocessing = TINY_MODELS[dataset]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(class_names), activation="softmax"),
        ]
    )
    folder = store / dataset / arch / str(version)
    save_serving_model(model, folder)
    metadata = ModelMetadata(
        dataset=dataset,
        arch=arch,
        version=version,
        class_names=class_names,
        input_shape=input_shape,
        preprocessing=preprocessing,
        parameter_count=model.count_params(),
        metrics={"test": {"loss": 2.3, "accuracy": 0.1}, "val": {"loss": 2.3, "accuracy": 0.1}},
        command=f"python -m training train --arch {arch} --dataset {dataset} --output-dir {store}",
    )
    (folder / "metadata.json").write_text(metadata.model_dump_json(indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of tiny models: `mnist/tiny` v1 and v2, `fashion_mnist/tiny` v1, `cifar10/tiny` v1."""
    store = tmp_path_factory.mktemp("store")
    for dataset in TINY_MODELS:
        export_tiny_model(store, dataset)
    export_tiny_model(store, "mnist", version=2, seed=1)
    return store


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The offline dataset copies (`DATA_DIR`, default ../shared/datasets)."""
    if not (DATA_DIR / "mnist.npz").is_file():
        pytest.skip(f"no datasets in {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def client(tiny_store: Path) -> Iterator[TestClient]:
    """The real app over the tiny store, lifespan run once for the whole session; every
    version serves (`VERSION_POLICY=all`), for the tests of versions and protocols that
    name them."""
    from app.config import Settings
    from app.main import create_app

    settings = Settings(models_dir=tiny_store, version_policy="all")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def shipped_client() -> Iterator[TestClient]:
    """The real app over the shipped store, lifespan run once for the whole session."""
    from app.config import Settings
    from app.main import create_app

    with TestClient(create_app(Settings(models_dir=STORE)), raise_server_exceptions=False) as test_client:
        yield test_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(
    store: Path, *args: str, stderr: str | None = None, launcher: str = "uvicorn", **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `uvicorn app.main:app` process on 127.0.0.1 over `store`, settings from `env`,
    more uvicorn arguments in `args` (e.g. `"--workers", "2"`), its log written to the file `stderr`;
    `launcher="app.serve"` starts it as `python -m app.serve` (`scripts/serve.sh`) instead.

    Yields:
        (host:port, the process) once `/healthz` answers; the process is stopped on exit.
    """
    port = _free_port()
    log = open(stderr, "wb") if stderr else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    target = ["app.main:app"] if launcher == "uvicorn" else []
    process = subprocess.Popen(
        [sys.executable, "-m", launcher, *target, "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "MODELS_DIR": str(store), "TF_CPP_MIN_LOG_LEVEL": "2", **env},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}")
            time.sleep(0.2)
        else:
            pytest.fail("the server did not start in 180 s")
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
        if stderr:
            log.close()  # type: ignore[union-attr]


@pytest.fixture(scope="session")
def live_server(tiny_store: Path) -> Iterator[str]:
    """A server process over the tiny store, every version serving, for real clients;
    yields host:port."""
    with serve(tiny_store, VERSION_POLICY="all") as (url, _):
        yield url


def upload(path: Path | bytes, name: str = "image.png", content_type: str = "image/png") -> dict:
    """A `files=` argument with one `image` part."""
    data = path.read_bytes() if isinstance(path, Path) else path
    return {"image": (name, data, content_type)}
