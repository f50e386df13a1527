"""Shared fixtures: the shipped model store, a client over the real app, test images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
STORE = PROJECT_ROOT / "models_store"
DATA_DIR = Path(os.environ.get("DATA_DIR", PROJECT_ROOT.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The offline dataset copies (`DATA_DIR`, default ../shared/datasets)."""
    if not (DATA_DIR / "mnist.npz").is_file():
        pytest.skip(f"no datasets in {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The real app over the shipped store, lifespan run once for the whole session."""
    from app.config import Settings, get_settings
    from app.main import app

    settings = Settings(models_dir=STORE)
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    app.dependency_overrides.clear()


def upload(path: Path | bytes, name: str = "image.png", content_type: str = "image/png") -> dict:
    """A `files=` argument with one `image` part."""
    data = path.read_bytes() if isinstance(path, Path) else path
    return {"image": (name, data, content_type)}
