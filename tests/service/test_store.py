"""The store contract: every version is validated at load, a broken one is refused with a
reason and never stops the others; published metadata carries no local paths."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.config import Settings
from app.main import create_app
from modelstore import ModelMetadata, public_command, version_folders
from tests.conftest import DATA, export_tiny_model, upload


@pytest.fixture(scope="module")
def broken_store(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny store plus broken versions: metadata without class names, a SavedModel that
    does not load, metadata of another folder, and a half-written staging folder."""
    store = tmp_path_factory.mktemp("broken")
    shutil.copytree(tiny_store, store, dirs_exist_ok=True)
    no_classes = export_tiny_model(store, "mnist", "no_classes")
    metadata = json.loads((no_classes / "metadata.json").read_text())
    del metadata["class_names"]
    (no_classes / "metadata.json").write_text(json.dumps(metadata))
    corrupt = export_tiny_model(store, "mnist", "corrupt")
    (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
    moved = export_tiny_model(store, "fashion_mnist", "moved")
    moved.rename(moved.with_name("3"))
    staging = export_tiny_model(store, "cifar10", "staged")
    staging.rename(staging.with_name(".2.tmp"))
    return store


def test_a_broken_version_is_refused_and_the_others_serve(broken_store: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), TestClient(create_app(Settings(models_dir=broken_store))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200
        failed = {item["model"]: item for item in ready.json()["failed"]}
        assert set(failed) == {"mnist/no_classes", "mnist/corrupt", "fashion_mnist/moved"}
        assert "class_names" in failed["mnist/no_classes"]["reason"]
        assert "does not load" in failed["mnist/corrupt"]["reason"]
        assert client.get("/models").json()["failed"] == ready.json()["failed"]
        listed = {item["model"] for item in client.get("/models").json()["models"]}
        assert listed == {"mnist/tiny", "fashion_mnist/tiny", "cifar10/tiny"}
        assert client.post("/predict?model=tiny", files=upload(DATA / "7.png")).status_code == 200
        assert client.post("/predict?model=no_classes", files=upload(DATA / "7.png")).status_code == 404
    refusals = [record for record in caplog.records if record.getMessage().startswith("refused ")]
    assert len(refusals) == 3
    assert all("\n" not in record.getMessage() for record in refusals)  # one line each


def test_staging_folders_are_not_versions(broken_store: Path) -> None:
    found = {(dataset, arch, version) for dataset, arch, version, _ in version_folders(broken_store)}
    assert ("cifar10", "staged", 2) not in found
    assert ("mnist", "tiny", 2) in found


def test_model_detail_publishes_no_local_paths(client: TestClient, tiny_store: Path) -> None:
    body = client.get("/models/mnist/tiny").json()
    assert body["metadata"]["command"] == "python -m training train --arch tiny --dataset mnist --output-dir store0"
    assert str(tiny_store) not in json.dumps(body)


def test_shipped_metadata_validates_and_names_the_signature() -> None:
    from tests.conftest import STORE

    for _, _, _, folder in version_folders(STORE):
        metadata = ModelMetadata.model_validate_json((folder / "metadata.json").read_text())
        assert (metadata.signature, metadata.input_name, metadata.output_name) == (
            "serving_default",
            "images",
            "probabilities",
        )
        assert metadata.command is None or "/work" not in metadata.command


def test_a_preprocessing_that_does_not_fit_the_input_is_refused_at_load() -> None:
    from tests.conftest import STORE

    folder = next(folder for dataset, _, _, folder in version_folders(STORE) if dataset == "mnist")
    fields = json.loads((folder / "metadata.json").read_text())
    with pytest.raises(ValidationError, match="'cifar10' makes 3-channel inputs; the model takes 1"):
        ModelMetadata.model_validate({**fields, "preprocessing": "cifar10"})
    assert ModelMetadata.model_validate({**fields, "preprocessing": "resize"}).preprocessing == "resize"


@pytest.mark.parametrize(
    ("command", "public"),
    [
        (
            "python -m training train --arch mlp --output-dir /srv/x/models_store",
            "python -m training train --arch mlp --output-dir models_store",
        ),
        (
            "python -m training train --data-dir=/home/me/data --arch mlp",
            "python -m training train --data-dir=data --arch mlp",
        ),
        (
            "python -m training train --initial-weights models_store/mnist/mlp/1",
            "python -m training train --initial-weights models_store/mnist/mlp/1",
        ),
    ],
)
def test_public_command_cuts_absolute_paths(command: str, public: str) -> None:
    assert public_command(command) == public


@pytest.mark.parametrize("load_on_start", ["defaults", "all"])
def test_versions_outside_the_defaults_load_on_their_first_request(
    load_on_start: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`LOAD_ON_START=defaults`: the default model loads at start; another version is
    checked, listed and loads (once) when first asked for; `all` loads both at start."""
    from prometheus_client import REGISTRY

    arch = f"lazy_{load_on_start}"  # metric labels of this test's own
    export_tiny_model(tmp_path, "mnist", arch="main")
    export_tiny_model(tmp_path, "mnist", arch=arch)
    settings = Settings(models_dir=tmp_path, default_models={"mnist": "main"}, load_on_start=load_on_start)

    def loaded(model: str) -> float | None:
        return REGISTRY.get_sample_value("model_loaded", {"model": f"mnist/{model}", "version": "1"})

    with caplog.at_level(logging.INFO), TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["models"] == 2
        assert {model["arch"] for model in client.get("/models").json()["models"]} == {"main", arch}
        assert loaded("main") == 1
        assert loaded(arch) == (1 if load_on_start == "all" else None)
        for _ in range(3):
            assert client.post(f"/predict?model={arch}", files=upload(DATA / "7.png")).status_code == 200
        assert loaded(arch) == 1
    first_use = [record for record in caplog.records if record.getMessage().startswith(f"loaded mnist/{arch} v1 on")]
    assert len(first_use) == (0 if load_on_start == "all" else 1)


def test_a_version_that_loads_on_first_use_is_still_checked_at_start(tmp_path: Path) -> None:
    """Its signature is read from saved_model.pb at start: a mismatch with metadata.json is
    refused then, not at the first request."""
    folder = export_tiny_model(tmp_path, "mnist", arch="mismatched")
    export_tiny_model(tmp_path, "mnist", arch="main")
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["input_shape"] = [32, 32, 1]
    (folder / "metadata.json").write_text(json.dumps(metadata))
    settings = Settings(models_dir=tmp_path, default_models={"mnist": "main"})
    with TestClient(create_app(settings)) as client:
        failed = client.get("/models").json()["failed"]
    assert [entry["model"] for entry in failed] == ["mnist/mismatched"]
    assert "input shape" in failed[0]["reason"]
