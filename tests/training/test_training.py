"""Quick-mode training runs end to end: train, export, reload, serve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import DATA, upload
from training.cli import main, resolve_recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_store(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A store with one quick-mode `mnist/mlp` model, trained by the CLI."""
    root = tmp_path_factory.mktemp("quick")
    argv = ["train", "--arch", "mlp", "--dataset", "mnist", "--quick", "--data-dir", str(data_dir)]
    argv += ["--output-dir", str(root / "store"), "--run-dir", str(root / "run")]
    assert main(argv) == 0
    return root / "store"


def test_export_writes_savedmodel_metadata_and_reports(quick_store: Path) -> None:
    version = quick_store / "mnist" / "mlp" / "1"
    assert (version / "saved_model.pb").is_file()
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["dataset"] == "mnist"
    assert metadata["parameter_count"] == 101_770
    assert metadata["input_shape"] == [28, 28, 1]
    assert metadata["class_names"] == list("0123456789")
    assert metadata["epochs_run"] == 1
    assert metadata["quick"] is True
    assert set(metadata["metrics"]) == {"train", "val", "test"}
    assert metadata["data_sha256"] == "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
    assert metadata["command"].startswith("python -m training train --arch mlp")
    matrix = np.array(metadata["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == metadata["test_size"]
    accuracy = np.trace(matrix) / matrix.sum()
    assert accuracy == pytest.approx(metadata["metrics"]["test"]["accuracy"], abs=1e-6)
    for name in ("history.png", "confusion_matrix.png", "errors.png"):
        assert (version / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_redraws_the_plots_from_metadata(quick_store: Path, tmp_path: Path) -> None:
    import shutil

    from PIL import Image

    copy = tmp_path / "mnist" / "mlp" / "1"
    shutil.copytree(quick_store / "mnist" / "mlp" / "1", copy)
    for name in ("history.png", "confusion_matrix.png"):
        (copy / name).unlink()
    assert main(["report", str(copy)]) == 0
    for name in ("history.png", "confusion_matrix.png"):
        with Image.open(copy / name) as image:
            assert image.format == "PNG" and image.width >= 500


def test_savedmodel_has_serving_signature(quick_store: Path) -> None:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(quick_store / "mnist" / "mlp" / "1"))
    function = loaded.signatures["serving_default"]
    (spec,) = function.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, 28, 28, 1]
    (output,) = function(**{next(iter(function.structured_input_signature[1])): tf.zeros((2, 28, 28, 1))}).values()
    np.testing.assert_allclose(output.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_savedmodel_stores_each_weight_once(quick_store: Path) -> None:
    import tensorflow as tf

    checkpoint = quick_store / "mnist" / "mlp" / "1" / "variables" / "variables"
    values = [shape for name, shape in tf.train.list_variables(str(checkpoint)) if name.endswith("VARIABLE_VALUE")]
    assert sorted(values) == sorted([[784, 128], [128], [128, 10], [10]])  # mlp: two Dense kernels and biases


def test_exported_model_is_served(quick_store: Path) -> None:
    from app.config import Settings
    from app.main import create_app

    with TestClient(create_app(Settings(models_dir=quick_store))) as client:
        response = client.post("/predict?model=mlp", files=upload(DATA / "7.png"))
        assert response.status_code == 200
        assert response.json()["model"] == "mnist/mlp"
        assert client.get("/models").json()["models"][0]["parameter_count"] == 101_770


def test_second_run_gets_the_next_version_and_compare_lists_it(
    quick_store: Path, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--arch", "lenet", "--dataset", "mnist", "--quick", "--data-dir", str(data_dir)]
    argv += ["--output-dir", str(quick_store), "--run-dir", str(tmp_path / "run"), "--epochs", "3"]
    main(argv)
    main(["compare", "--output-dir", str(quick_store)])
    board = capsys.readouterr().out
    assert "lenet" in board and "mlp" in board and "61,706" in board


def test_a_second_network_of_one_architecture_under_its_own_name(data_dir: Path, tmp_path: Path) -> None:
    argv = ["train", "--arch", "mlp", "--dataset", "mnist", "--quick", "--data-dir", str(data_dir), "--run-dir"]
    argv += [
        str(tmp_path / "run"),
        "--output-dir",
        str(tmp_path / "store"),
        "--name",
        "mlp_seed7",
        "--seed",
        "7",
        "--split-seed",
        "42",
    ]
    main(argv)
    metadata = json.loads((tmp_path / "store" / "mnist" / "mlp_seed7" / "1" / "metadata.json").read_text())
    assert (metadata["arch"], metadata["architecture"], metadata["version"]) == ("mlp_seed7", "mlp", 1)
    assert (metadata["seed"], metadata["split_seed"]) == (7, 42)
    assert not (tmp_path / "store" / "mnist" / "mlp").exists()
    with pytest.raises(SystemExit):
        main([*argv[:-6], "--name", "../mlp"])


def test_recipe_overrides() -> None:
    recipe = resolve_recipe("custom2", {"epochs": 3, "patience": 0, "dropout": 0.1, "batch_size": None})
    assert recipe.epochs == 3
    assert recipe.early_stopping_patience is None
    assert recipe.options == {"dropout": 0.1}
    assert recipe.batch_size == 32


def test_a_folder_of_class_folders_trains_and_serves(tmp_path: Path) -> None:
    from app.config import Settings
    from app.main import create_app
    from tests.images import encode
    from tests.make_shapes import draw_shape, make_shapes

    root = make_shapes(tmp_path / "shapes", per_class=20)
    store = tmp_path / "store"
    argv = ["train", "--arch", "lenet", "--dataset", f"folder:{root}", "--image-size", "32", "--quick"]
    assert main([*argv, "--output-dir", str(store), "--run-dir", str(tmp_path / "run")]) == 0
    metadata = json.loads((store / "folder_shapes" / "lenet" / "1" / "metadata.json").read_text())
    assert metadata["class_names"] == ["circle", "square", "triangle"]
    assert metadata["input_shape"] == [32, 32, 3] and metadata["preprocessing"] == "resize"
    assert metadata["test_size"] == 12  # a fifth of each class held out
    assert 0.0 <= metadata["metrics"]["test"]["accuracy"] <= 1.0
    photo = encode(draw_shape("circle", np.random.default_rng(5)), "PNG")
    with TestClient(create_app(Settings(models_dir=store))) as client:
        answer = client.post("/predict?model=folder_shapes/lenet", files=upload(photo))
        assert answer.status_code == 200, answer.text
        assert [item["class_name"] for item in answer.json()["probabilities"]] == ["circle", "square", "triangle"]
